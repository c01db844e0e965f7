"""Converters from public dataset layouts (and any image/label folder) to raw datasets in nnU-Net v2 format.

``CONVERTERS`` maps the CLI name to the converter; every converter takes the source, the data root and keyword
options, and returns the raw dataset folder it wrote.
"""

from salseg.convert.acdc import convert_acdc
from salseg.convert.cvc import convert_cvc
from salseg.convert.flare21 import convert_flare21
from salseg.convert.folder import convert_folder
from salseg.convert.glas import convert_glas
from salseg.convert.isic2018 import convert_isic2018
from salseg.convert.msd import convert_msd
from salseg.convert.synapse import convert_synapse

CONVERTERS = {
    "acdc": convert_acdc,
    "synapse": convert_synapse,
    "isic2018": convert_isic2018,
    "cvc-clinicdb": convert_cvc,
    "glas": convert_glas,
    "flare21": convert_flare21,
    "msd": convert_msd,
    "folder": convert_folder,
}

__all__ = ["CONVERTERS", "convert_acdc", "convert_cvc", "convert_flare21", "convert_folder", "convert_glas",
           "convert_isic2018", "convert_msd", "convert_synapse"]
