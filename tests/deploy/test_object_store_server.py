"""The S3-compatible test server (moto): objects written, listed and read via presigned URLs."""

from __future__ import annotations

import urllib.request

from tests.deploy.servers import S3Server


def test_s3_server_round_trip_and_presigned_get(s3_server: S3Server) -> None:
    s3 = s3_server.client()
    s3.create_bucket(Bucket="avgen-content")
    body = b"\x00\x01 fake mp4 bytes"
    key = "alice/0123456789abcdef0123456789abcdef/stitched_mp4/video.mp4"
    s3.put_object(Bucket="avgen-content", Key=key, Body=body, ContentType="video/mp4")
    listed = s3.list_objects_v2(Bucket="avgen-content", Prefix="alice/")
    assert [o["Key"] for o in listed["Contents"]] == [key]
    url = s3.generate_presigned_url(
        "get_object", Params={"Bucket": "avgen-content", "Key": key}, ExpiresIn=60
    )
    assert url.startswith(s3_server.endpoint_url)
    with urllib.request.urlopen(url, timeout=10) as resp:
        assert resp.read() == body
        assert resp.headers["Content-Type"] == "video/mp4"
