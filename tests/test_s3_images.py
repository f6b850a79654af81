"""Frames in S3-compatible object storage, as a specification, against a real SeaweedFS S3
gateway (one per session): the same content-addressed layout as on disk, under the URL's
prefix; the image is stored before the record that names it, so a store that cannot take it
means 503 and no record; wrong credentials or a missing bucket stop the start with a message
naming QC_IMAGE_STORE; local disk stays the default."""

from __future__ import annotations

import hashlib
import secrets

import boto3
import pytest

from inspection.errors import ConfigError, NotFound
from inspection.settings import Settings
from inspection.store.image_store_s3 import S3ImageStore, parse_url
from inspection.store.image_stores import open_image_store
from inspection.store.images import ImageStore, ImageStoreUnavailable
from serving.launch import free_port
from tests.real_servers import FAIL_ALL
from tests.service_harness import frame, running

pytestmark = pytest.mark.slow


@pytest.fixture
def s3(seaweed_s3, monkeypatch):
    """A fresh bucket, and the AWS_* variables boto3 reads, set for this test."""
    for name, value in seaweed_s3.env.items():
        monkeypatch.setenv(name, value)
    return seaweed_s3, seaweed_s3.make_bucket(f"qc-{secrets.token_hex(4)}")


def objects(server, bucket: str) -> dict[str, bytes]:
    client = boto3.client("s3", endpoint_url=server.endpoint, region_name="us-east-1",
                          aws_access_key_id=server.access_key, aws_secret_access_key=server.secret_key)
    listed = client.list_objects_v2(Bucket=bucket).get("Contents", [])
    return {o["Key"]: client.get_object(Bucket=bucket, Key=o["Key"])["Body"].read() for o in listed}


def test_the_layout_is_the_local_one_under_the_prefix(s3):
    server, bucket = s3
    store = S3ImageStore.from_url(f"s3://{bucket}/plant-a/line-1", endpoint_url=server.endpoint)
    data = frame("png", seed=1)
    sha = store.put(data, "png")
    assert sha == hashlib.sha256(data).hexdigest()
    assert store.put(data, "png") == sha  # the same frame twice: one object
    assert objects(server, bucket) == {f"plant-a/line-1/{sha[:2]}/{sha[2:4]}/{sha}.png": data}
    assert store.read(sha, "png") == store.read(sha) == data  # with or without its format
    with pytest.raises(NotFound, match=f"image {'0' * 64} is not stored in s3://{bucket}/plant-a/line-1"):
        store.read("0" * 64)


def test_a_service_stores_frames_in_s3_before_their_records(s3, untrained_model, tmp_path):
    server, bucket = s3
    with running(tmp_path / "home", untrained_model, image_store=f"s3://{bucket}/frames",
                 s3_endpoint_url=server.endpoint) as service:
        station = service.add_station(FAIL_ALL)
        data = frame("jpeg", seed=7)
        answer = service.inspect(station, data)
        assert answer.status_code == 200, answer.text
        sha = hashlib.sha256(data).hexdigest()
        assert objects(server, bucket) == {f"frames/{sha[:2]}/{sha[2:4]}/{sha}.jpg": data}
        assert not service.image_files()  # nothing on local disk
        image = service.client.get(f"/v1/inspections/{answer.json()['id']}/image", headers=service.admin)
        assert image.status_code == 200 and image.content == data

        # The store goes away: the frame is refused with 503 and nothing names a missing image.
        dead = S3ImageStore.from_url(f"s3://{bucket}/frames", endpoint_url=f"http://127.0.0.1:{free_port()}",
                                     timeout_s=1)
        service.state.inspector.committer.images = dead  # the group committer writes the images
        refused = service.inspect(station, frame("jpeg", seed=8), headers={"Idempotency-Key": "k-8"})
        assert refused.status_code == 503, refused.text
        assert refused.headers["Retry-After"] == "1"
        assert "image store" in refused.json()["detail"] and "Idempotency-Key" in refused.json()["detail"]
        assert len(service.records(station)) == 1

        service.state.inspector.committer.images = service.state.images  # back: the retry is recorded once
        retried = service.inspect(station, frame("jpeg", seed=8), headers={"Idempotency-Key": "k-8"})
        assert retried.status_code == 200
        assert len(service.records(station)) == 2


def test_wrong_credentials_stop_the_start(s3, untrained_model, tmp_path, monkeypatch):
    server, bucket = s3
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "not-the-secret")
    expected = f"image store s3://{bucket}: cannot reach its bucket.*QC_IMAGE_STORE"
    with pytest.raises(ImageStoreUnavailable, match=expected), running(
            tmp_path / "home", untrained_model, image_store=f"s3://{bucket}", s3_endpoint_url=server.endpoint):
        pass


def test_a_missing_bucket_stops_the_start(s3, tmp_path):
    server, _ = s3
    settings = Settings(home=tmp_path, image_store="s3://no-such-bucket/x", s3_endpoint_url=server.endpoint)
    with pytest.raises(ImageStoreUnavailable, match="s3://no-such-bucket/x: cannot reach its bucket"):
        open_image_store(settings)


def test_urls_and_the_default():
    assert parse_url("s3://frames") == ("frames", "")
    assert parse_url("s3://frames/plant-a/") == ("frames", "plant-a")
    for bad in ("s3://", "s3:///x", "http://frames/x", "s3://frames/x?versioning=1"):
        with pytest.raises(ConfigError, match="give s3://BUCKET"):
            parse_url(bad)
    settings = Settings(home="/tmp/qc-default-home")
    store = open_image_store(settings)
    assert isinstance(store, ImageStore) and store.root == settings.images_dir
    shared = open_image_store(Settings(home="/tmp/qc-default-home", image_store="/mnt/qc-images"))
    assert isinstance(shared, ImageStore) and str(shared.root) == "/mnt/qc-images"
