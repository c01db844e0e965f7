"""Context modules. Importing this package registers the slice-recurrent heads (SA-LSTM, LSTM-SA, ablations) and the
context baseline ``stack``; RecA lives in ``salseg.nets.modules.reca`` (imported by the registry on its own)."""

from salseg.nets.modules import slice_heads  # noqa: F401  (registers salstm, lstmsa, ablations)
from salseg.nets.modules import stack  # noqa: F401  (registers stack)
from salseg.nets.modules.convlstm import ConvLSTMCell, LSTMStates
from salseg.nets.modules.positions import POSITIONS, predict_volume_amortized
from salseg.nets.modules.slice_model import SliceRecurrentModel
from salseg.nets.modules.stack import StackModel

__all__ = ["ConvLSTMCell", "LSTMStates", "POSITIONS", "SliceRecurrentModel", "StackModel",
           "predict_volume_amortized"]
