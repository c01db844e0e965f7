"""Raw datasets: dataset.json schema, case listing, image IO, integrity checks."""

from salseg.dataset.cases import Case, list_cases
from salseg.dataset.dataset_json import DatasetInfo, load_dataset_json, write_dataset_json
from salseg.dataset.io import read_image, read_images, read_label, write_image
from salseg.dataset.naming import dataset_folder_name, list_datasets, resolve_dataset

__all__ = [
    "Case", "DatasetInfo", "dataset_folder_name", "list_cases", "list_datasets", "load_dataset_json",
    "read_image", "read_images", "read_label", "resolve_dataset", "write_dataset_json", "write_image",
]
