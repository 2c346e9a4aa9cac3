"""hutch's image store: content-addressed blobs, extracted layers and tar streams."""

from hutch.errors import HutchError as StoreError
from hutch.store.layout import Limits
from hutch.store.store import Image, Store

__all__ = ["Image", "Limits", "Store", "StoreError"]
