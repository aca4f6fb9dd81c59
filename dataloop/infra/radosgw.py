"""Ceph radosgw's own APIs, for ``dataloop infra bootstrap``: vehicle identities through the
Admin Ops API (``/admin/user``, SigV4-signed like S3) with inline policies through radosgw's
IAM ``PutUserPolicy`` on the same endpoint (radosgw 16 has no IAM CreateUser or managed
policies), and upload notifications through its SNS-compatible topics.

The admin identity needs the caps ``users=*`` and ``user-policy=*`` (``radosgw-admin user
create ... --caps``). TLS endpoints are verified against ``SSL_CERT_FILE`` when set (as the
minio SDK does), else the system's CA bundle.
"""

from __future__ import annotations

import json
import os
import secrets
from typing import Any
from urllib.parse import quote, urlencode

import boto3
import urllib3
from botocore.auth import S3SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.config import Config
from botocore.credentials import Credentials

TOPIC_ATTRIBUTES = {"persistent": "true"}
"""Persistent topics: radosgw queues an event and retries its delivery while the endpoint is
down, instead of dropping it (the upload itself never waits for the endpoint)."""


class RadosgwError(Exception):
    """radosgw refused an admin request (message names the call and the server's code)."""


class RadosgwAdmin:
    """Admin Ops, IAM and SNS calls against one radosgw endpoint with one admin identity."""

    def __init__(
        self, url: str, access_key: str, secret_key: str, region: str = "us-east-1"
    ) -> None:
        self.url = url.rstrip("/")
        self.region = region
        self._creds = Credentials(access_key, secret_key)
        self._verify = os.environ.get("SSL_CERT_FILE") or os.environ.get("AWS_CA_BUNDLE")
        self._http = urllib3.PoolManager(
            cert_reqs="CERT_REQUIRED", ca_certs=self._verify, retries=urllib3.Retry(3)
        )

    def _client(self, service: str) -> Any:
        return boto3.client(
            service,
            endpoint_url=self.url,
            region_name=self.region,
            aws_access_key_id=self._creds.access_key,
            aws_secret_access_key=self._creds.secret_key,
            verify=self._verify,
            config=Config(
                s3={"addressing_style": "path"}, request_checksum_calculation="when_required"
            ),
        )

    def _call(self, method: str, path: str, params: dict[str, str]) -> tuple[int, Any]:
        """One signed Admin Ops request; (HTTP status, parsed JSON body or None)."""
        url = f"{self.url}{path}?{urlencode(params, quote_via=quote)}"  # %20, never +
        request = AWSRequest(method=method, url=url, data=b"")
        S3SigV4Auth(self._creds, "s3", self.region).add_auth(request)
        resp = self._http.request(method, url, headers=dict(request.headers.items()), body=b"")
        try:
            body = json.loads(resp.data) if resp.data else None
        except ValueError:
            body = None  # XML or HTML: not an Admin Ops answer
        return resp.status, body

    def probe(self) -> bool:
        """Whether this endpoint speaks the Admin Ops API: a lookup of a user that cannot
        exist answers radosgw's JSON ``NoSuchUser``; other servers answer an S3 error in
        XML (moto, MinIO: no bucket ``admin``). A radosgw that refuses the lookup raises."""
        status, body = self._call("GET", "/admin/user", {"uid": f"probe-{secrets.token_hex(6)}"})
        code = body.get("Code") if isinstance(body, dict) else None
        if status == 404 and code == "NoSuchUser":
            return True
        if code in ("AccessDenied", "SignatureDoesNotMatch", "InvalidAccessKeyId"):
            raise RadosgwError(
                f"radosgw Admin Ops refused the credentials ({code}): the admin user needs "
                "the caps users=* and user-policy=*"
            )
        return False

    def user_exists(self, uid: str) -> bool:
        status, body = self._call("GET", "/admin/user", {"uid": uid})
        if status == 200:
            return True
        if status == 404 and isinstance(body, dict) and body.get("Code") == "NoSuchUser":
            return False
        raise RadosgwError(f"GET /admin/user {uid}: HTTP {status} {body}")

    def create_user(self, uid: str, display_name: str) -> str:
        """A new user whose access key is its uid; returns the secret (made here, so it
        never passes through a log of the server's generated keys)."""
        secret = secrets.token_urlsafe(30)
        status, body = self._call(
            "PUT",
            "/admin/user",
            {
                "uid": uid,
                "display-name": display_name,
                "access-key": uid,
                "secret-key": secret,
                "generate-key": "false",
            },
        )
        if status != 200:
            raise RadosgwError(f"PUT /admin/user {uid}: HTTP {status} {body}")
        return secret

    def put_user_policy(self, uid: str, name: str, document: dict[str, Any]) -> None:
        """Attach (or replace) an inline policy: idempotent."""
        self._client("iam").put_user_policy(
            UserName=uid, PolicyName=name, PolicyDocument=json.dumps(document)
        )

    def owner_arn(self, bucket: str) -> str:
        """The bucket owner as a policy principal (``tenant$uid`` -> ``...::tenant:user/uid``)."""
        owner = self._client("s3").get_bucket_acl(Bucket=bucket)["Owner"]["ID"]
        tenant, _, uid = owner.rpartition("$")
        return f"arn:aws:iam::{tenant}:user/{uid}"

    def subscribe(self, bucket: str, key_prefix: str, key_suffix: str, push_endpoint: str) -> str:
        """Announce every object created under ``key_prefix`` with ``key_suffix`` (committed
        manifests) to ``push_endpoint`` (http(s)://, amqp://, kafka://) through a topic named
        after the bucket. Replaces the bucket's notification configuration; returns the topic
        ARN.

        An ``amqp://...?exchange=E&queue=Q`` endpoint (``DATALOOP_UPLOAD_QUEUE``'s form) gets its
        exchange, stream and dead-letter queue declared first, so no event finds no route."""
        attributes = {"push-endpoint": push_endpoint, **TOPIC_ATTRIBUTES}
        if push_endpoint.startswith("amqp://"):
            from dataloop.ingest.upload_queues import AmqpTarget, declare_upload_stream

            try:
                target = AmqpTarget.parse(push_endpoint)
            except ValueError as e:
                raise RadosgwError(f"--notify-endpoint: {e}") from None
            if target.user and self.url.startswith("http://"):
                raise RadosgwError(
                    "radosgw refuses a push endpoint with a password over plain HTTP: bootstrap "
                    "against its https endpoint, or give the amqp:// URL without user:password "
                    "(the broker's guest)"
                )
            declare_upload_stream(target)
            attributes.update(
                {
                    "push-endpoint": target.push_endpoint,
                    "amqp-exchange": target.exchange,
                    "amqp-ack-level": "broker",  # retried until the broker has it
                }
            )
        topic = self._client("sns").create_topic(
            Name=f"dataloop-{bucket}-manifests", Attributes=attributes
        )["TopicArn"]
        self._client("s3").put_bucket_notification_configuration(
            Bucket=bucket,
            NotificationConfiguration={
                "TopicConfigurations": [
                    {
                        "Id": "dataloop-committed-manifests",
                        "TopicArn": topic,
                        "Events": ["s3:ObjectCreated:*"],
                        "Filter": {
                            "Key": {
                                "FilterRules": [
                                    {"Name": "prefix", "Value": key_prefix},
                                    {"Name": "suffix", "Value": key_suffix},
                                ]
                            }
                        },
                    }
                ]
            },
        )
        return topic
