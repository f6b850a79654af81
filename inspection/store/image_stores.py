"""Which image store QC_IMAGE_STORE names: $QC_HOME/images, a folder, or S3.

Example::

    images = open_image_store(settings)   # ImageStore or S3ImageStore, both ImageStorage

Empty is the default, `$QC_HOME/images` on this machine. Replicas on several hosts need one
store they all reach: a shared folder (NFS: `QC_IMAGE_STORE=/mnt/qc-images`) or object
storage (`QC_IMAGE_STORE=s3://qc-frames/plant-a`, with QC_S3_ENDPOINT_URL for a server that
is not AWS). An S3 store is checked at start-up: a wrong bucket or key stops the start.
"""

from __future__ import annotations

from pathlib import Path

from inspection.settings import Settings
from inspection.store.images import ImageStorage, ImageStore


def open_image_store(settings: Settings) -> ImageStorage:
    location = settings.image_store.strip()
    if location.startswith("s3://"):
        from inspection.store.image_store_s3 import S3ImageStore

        store = S3ImageStore.from_url(location, endpoint_url=settings.s3_endpoint_url)
        store.check()
        return store
    return ImageStore(Path(location).expanduser() if location else settings.images_dir)
