"""Dagster resources: the edges where I/O, devices and delivery are configured."""

from resources.alerting import AlertingResource
from resources.image_store import ImageStoreResource
from resources.quality import QualityResource
from resources.torch_device import TorchDevice
from resources.warehouse import WarehouseResource

__all__ = ["AlertingResource", "ImageStoreResource", "QualityResource", "TorchDevice", "WarehouseResource"]
