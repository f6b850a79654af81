"""Frames in S3-compatible object storage (AWS S3, SeaweedFS, MinIO, Ceph RGW): the store that
replicas on several hosts share.

Example::

    images = S3ImageStore.from_url("s3://qc-frames/plant-a", endpoint_url="http://seaweedfs:8333")
    sha = images.put(jpeg_bytes, "jpeg")     # s3://qc-frames/plant-a/ab/cd/<sha256>.jpg
    images.read(sha, "jpeg") == jpeg_bytes

The same content-addressed layout as the local store (`images.py`), under the URL's prefix.
A PUT is acknowledged by S3 only once the object is stored, and carries its Content-MD5, so
the server refuses bytes damaged on the way: `put` returns only when the image is durable,
before the record that names it is committed, as on disk. An unreachable or refusing store is
`ImageStoreUnavailable` (the station gets 503 and retries with its Idempotency-Key; nothing
was recorded). Credentials are boto3's own: AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY (or
AWS_PROFILE, an instance role, ...); QC_S3_ENDPOINT_URL names a non-AWS endpoint.
"""

from __future__ import annotations

import base64
import hashlib
from urllib.parse import urlparse

from inspection.errors import ConfigError, NotFound
from inspection.store.images import EXTENSIONS, ImageStoreUnavailable


def _import_boto3():
    try:
        import boto3
        from botocore.config import Config
    except ImportError as error:
        raise ConfigError("QC_IMAGE_STORE=s3://... needs boto3: pip install 'qc[s3]'") from error
    return boto3, Config


def parse_url(url: str) -> tuple[str, str]:
    """s3://bucket/some/prefix -> ("bucket", "some/prefix")."""
    parsed = urlparse(url)
    if parsed.scheme != "s3" or not parsed.netloc or parsed.query or parsed.fragment:
        raise ConfigError(f"QC_IMAGE_STORE={url!r}: give s3://BUCKET or s3://BUCKET/PREFIX")
    return parsed.netloc, parsed.path.strip("/")


class S3ImageStore:
    """Thread-safe: boto3 clients are."""

    def __init__(self, client, bucket: str, prefix: str = "") -> None:
        self.client, self.bucket, self.prefix = client, bucket, prefix
        from botocore.exceptions import BotoCoreError, ClientError

        self._errors = (BotoCoreError, ClientError)

    @classmethod
    def from_url(cls, url: str, *, endpoint_url: str = "", timeout_s: float = 10.0) -> S3ImageStore:
        bucket, prefix = parse_url(url)
        boto3, Config = _import_boto3()
        config = Config(
            connect_timeout=timeout_s, read_timeout=timeout_s, max_pool_connections=32,
            retries={"max_attempts": 3, "mode": "standard"},
            # boto3 >= 1.36 adds CRC32 trailers to every PUT, which several S3-compatible
            # servers refuse; Content-MD5 (below) protects the bytes on every server.
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required",
            s3={"addressing_style": "path"},  # bucket in the path: no DNS per bucket on-premises
        )
        # A session of its own: boto3's default one resolves credentials once per process and
        # is not safe to share across threads while clients are made.
        client = boto3.session.Session().client("s3", endpoint_url=endpoint_url or None, config=config)
        return cls(client, bucket, prefix)

    def key(self, sha: str, image_format: str | None) -> str:
        name = f"{sha[:2]}/{sha[2:4]}/{sha}{EXTENSIONS.get(image_format or '', '.bin')}"
        return f"{self.prefix}/{name}" if self.prefix else name

    @property
    def where(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}".rstrip("/")

    def _unavailable(self, action: str, error: Exception) -> ImageStoreUnavailable:
        first = str(error).strip().splitlines()[0][:200] if str(error).strip() else type(error).__name__
        return ImageStoreUnavailable(f"image store {self.where}: cannot {action} ({first}); check "
                                     "QC_IMAGE_STORE, QC_S3_ENDPOINT_URL and the AWS_* credentials")

    def check(self) -> None:
        """The bucket exists and these credentials reach it (at start-up and on /readyz)."""
        try:
            self.client.head_bucket(Bucket=self.bucket)
        except self._errors as error:
            raise self._unavailable("reach its bucket", error) from error

    def put(self, data: bytes, image_format: str) -> str:
        sha = hashlib.sha256(data).hexdigest()
        md5 = base64.b64encode(hashlib.md5(data).digest()).decode()
        try:
            self.client.put_object(Bucket=self.bucket, Key=self.key(sha, image_format), Body=data,
                                   ContentMD5=md5, ContentType=f"image/{image_format}")
        except self._errors as error:
            raise self._unavailable("store an image", error) from error
        return sha

    def put_many(self, items: list[tuple[bytes, str]]) -> list[str | OSError]:
        """Each image stored (a PUT is durable when it returns); an `ImageStoreUnavailable` in
        place of one that failed, so a group commit fails that frame alone."""
        stored: list[str | OSError] = []
        for data, image_format in items:
            try:
                stored.append(self.put(data, image_format))
            except ImageStoreUnavailable as error:
                stored.append(error)
        return stored

    def read(self, sha: str, image_format: str | None = None) -> bytes:
        formats = [image_format] if image_format else list(EXTENSIONS)
        for fmt in formats:
            try:
                return self.client.get_object(Bucket=self.bucket, Key=self.key(sha, fmt))["Body"].read()
            except self._errors as error:
                code = getattr(error, "response", {}).get("Error", {}).get("Code")
                if code not in ("NoSuchKey", "404"):
                    raise self._unavailable("read an image", error) from error
        raise NotFound(f"image {sha} is not stored in {self.where} (PASS frames are kept only at "
                       "the sample rate)")
