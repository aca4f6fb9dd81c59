"""The queues bucket notifications arrive on, behind one small protocol that the sensor's tick
(``queue_tick.py``) reads: SQS (AWS S3's own target) and RabbitMQ streams (radosgw's and
MinIO's AMQP target). ``DATALOOP_UPLOAD_QUEUE`` names one (``open_queue``).

Either way a message counts as consumed only once the sensor's run requests are stored:

- SQS: received messages stay invisible (``DATALOOP_QUEUE_VISIBILITY_S``) until the *next*
  tick deletes them by their receipt handles;
- a RabbitMQ **stream** keeps its messages (``x-max-age``, 7 days by default), and the sensor's
  cursor holds the offset to read from, stored by Dagster together with the run requests. A
  classic AMQP queue cannot work this way: its unacknowledged messages return to the queue when
  the tick's connection closes, before Dagster has stored anything.
"""

from __future__ import annotations

import json
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Protocol
from urllib.parse import parse_qs, quote, unquote, urlsplit

VISIBILITY_S = 900
"""SQS: how long a received message stays invisible, waiting for the next tick's ack."""
MAX_MESSAGES = 10_000
"""Messages one tick reads at most (``DATALOOP_QUEUE_MAX_MESSAGES``)."""
STREAM_MAX_AGE = "7D"
"""How long the upload stream keeps a message: a sensor stopped for less loses nothing."""
STREAM_IDLE_S = 0.5
"""A stream has no end: a read stops once no message came for this long."""
STREAM_PREFETCH = 1000


@dataclass(frozen=True)
class Message:
    body: str
    handle: str = ""
    """What acknowledges it: an SQS receipt handle; empty on a stream (the offset does)."""


@dataclass
class Received:
    messages: list[Message] = field(default_factory=list)
    offset: int | None = None
    """Streams: the offset the next read starts at (the cursor stores it); else ``None``."""


class UploadQueue(Protocol):
    def receive(self, max_messages: int, offset: int | None = None) -> Received:
        """Up to about ``max_messages`` messages (a stream: from ``offset``, else its start)."""
        ...

    def acknowledge(self, handles: list[str]) -> int:
        """Delete the messages; returns how many the queue no longer knew (expired handles:
        those messages come again, and are deduped)."""
        ...

    def dead_letter(self, message: Message, reason: str) -> bool:
        """Move a bad message to the dead-letter queue with its reason; ``False`` where the
        queue has none (the message stays, for the queue's own redrive)."""
        ...


class SqsUploadQueue:
    """An SQS queue of bucket notifications: receive a batch, acknowledge it later. Its
    dead-letter queue is ``dead_letter_url``, else the queue's redrive policy target."""

    def __init__(
        self,
        queue_url: str,
        client: Any = None,
        *,
        dead_letter_url: str | None = None,
        visibility_s: int = VISIBILITY_S,
    ) -> None:
        import boto3

        self.queue_url = queue_url
        self.visibility_s = visibility_s
        self.client = client or boto3.client(
            "sqs",
            endpoint_url=os.environ.get("DATALOOP_SQS_ENDPOINT") or None,
            region_name=os.environ.get("AWS_REGION")
            or os.environ.get("AWS_DEFAULT_REGION")
            or "us-east-1",
        )
        self._dead_letter_url = dead_letter_url

    def _receive_one(self, _: int) -> list[Message]:
        resp = self.client.receive_message(
            QueueUrl=self.queue_url,
            MaxNumberOfMessages=10,
            WaitTimeSeconds=0,
            VisibilityTimeout=self.visibility_s,
        )
        return [Message(m["Body"], m["ReceiptHandle"]) for m in resp.get("Messages", [])]

    def receive(self, max_messages: int = MAX_MESSAGES, offset: int | None = None) -> Received:
        """Eight receive calls at a time, no waiting, until the queue answers none."""
        out: list[Message] = []
        with ThreadPoolExecutor(max_workers=8) as pool:
            while len(out) < max_messages:
                rounds = min(8, -(-(max_messages - len(out)) // 10))
                got = [m for batch in pool.map(self._receive_one, range(rounds)) for m in batch]
                out += got
                if not got:
                    break
        return Received(out)

    def _delete(self, batch: list[str]) -> int:
        resp = self.client.delete_message_batch(
            QueueUrl=self.queue_url,
            Entries=[{"Id": str(i), "ReceiptHandle": h} for i, h in enumerate(batch)],
        )
        return len(resp.get("Failed", []))

    def acknowledge(self, handles: list[str]) -> int:
        batches = [handles[i : i + 10] for i in range(0, len(handles), 10)]
        with ThreadPoolExecutor(max_workers=8) as pool:
            return sum(pool.map(self._delete, batches))

    def dead_letter_url(self) -> str | None:
        if self._dead_letter_url is None:
            attrs = self.client.get_queue_attributes(
                QueueUrl=self.queue_url, AttributeNames=["RedrivePolicy"]
            ).get("Attributes", {})
            target = json.loads(attrs.get("RedrivePolicy", "{}")).get("deadLetterTargetArn")
            self._dead_letter_url = (
                self.client.get_queue_url(QueueName=target.rsplit(":", 1)[-1])["QueueUrl"]
                if target
                else ""
            )
        return self._dead_letter_url or None

    def dead_letter(self, message: Message, reason: str) -> bool:
        url = self.dead_letter_url()
        if url is None:
            return False
        self.client.send_message(
            QueueUrl=url,
            MessageBody=message.body,
            MessageAttributes={"reason": {"DataType": "String", "StringValue": reason[:1000]}},
        )
        self.acknowledge([message.handle])
        return True


@dataclass(frozen=True)
class AmqpTarget:
    """Where the upload stream lives on a RabbitMQ broker, from
    ``amqp://user:password@host:port/vhost?exchange=E&queue=Q``."""

    host: str
    port: int
    user: str
    password: str
    vhost: str
    exchange: str
    queue: str

    @property
    def dead_letter_queue(self) -> str:
        return f"{self.queue}.dead"

    @property
    def push_endpoint(self) -> str:
        """The broker URL radosgw pushes to (no query: radosgw takes the exchange apart)."""
        auth = f"{quote(self.user, safe='')}:{quote(self.password, safe='')}@" if self.user else ""
        vhost = "" if self.vhost == "/" else "/" + self.vhost
        return f"amqp://{auth}{self.host}:{self.port}{vhost}"

    @classmethod
    def parse(cls, url: str) -> AmqpTarget:
        parts = urlsplit(url)
        if parts.scheme != "amqp" or not parts.hostname:
            raise ValueError(f"{url!r}: expected amqp://user:password@host:port/vhost?queue=Q")
        query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        unknown = set(query) - {"exchange", "queue"}
        if unknown:
            raise ValueError(
                f"{url!r}: unknown parameter(s) {sorted(unknown)}; allowed: exchange, queue"
            )
        return cls(
            host=parts.hostname,
            port=parts.port or 5672,
            user=unquote(parts.username or ""),
            password=unquote(parts.password or ""),
            vhost=unquote(parts.path[1:]) if len(parts.path) > 1 else "/",
            exchange=query.get("exchange", "dataloop-uploads"),
            queue=query.get("queue", "dataloop-uploads"),
        )


def declare_upload_stream(target: AmqpTarget) -> None:
    """Declare, idempotently, the topic exchange radosgw publishes to, the stream bound to it
    (every routing key: radosgw uses the topic's name) and the dead-letter queue beside it.
    A queue of the same name but other arguments is refused by the broker, by name."""
    with _connect(target) as conn:
        channel = conn.channel()
        channel.exchange_declare(target.exchange, "topic", durable=True, auto_delete=False)
        channel.queue_declare(
            target.queue,
            durable=True,
            auto_delete=False,
            arguments={"x-queue-type": "stream", "x-max-age": STREAM_MAX_AGE},
        )
        channel.queue_bind(target.queue, target.exchange, routing_key="#")
        channel.queue_declare(target.dead_letter_queue, durable=True, auto_delete=False)


def _connect(target: AmqpTarget) -> Any:
    import amqp

    conn = amqp.Connection(
        host=f"{target.host}:{target.port}",
        userid=target.user or "guest",  # the broker's default, as radosgw's
        password=target.password or "guest",
        virtual_host=target.vhost,
        connect_timeout=10,
    )
    conn.connect()
    return conn


class AmqpStreamQueue:
    """A RabbitMQ stream of bucket notifications, read from an offset the caller keeps."""

    def __init__(self, target: AmqpTarget) -> None:
        self.target = target
        declare_upload_stream(target)

    def receive(self, max_messages: int = MAX_MESSAGES, offset: int | None = None) -> Received:
        """The messages at ``offset`` and after (the stream's start when ``None``), until
        ``max_messages`` or until none came for ``STREAM_IDLE_S``."""
        got: list[Message] = []
        next_offset = offset
        unacked: list[int] = []

        def on_message(msg: Any) -> None:
            nonlocal next_offset
            at = int(msg.headers["x-stream-offset"])
            unacked.append(msg.delivery_info["delivery_tag"])
            # Delivery is by chunk: a read may begin a little before the offset asked for.
            if (offset is None or at >= offset) and len(got) < max_messages:
                body = msg.body
                got.append(Message(body.decode() if isinstance(body, bytes) else body))
                next_offset = at + 1

        with _connect(self.target) as conn:
            channel = conn.channel()
            channel.basic_qos(0, STREAM_PREFETCH, False)
            channel.basic_consume(
                self.target.queue,
                callback=on_message,
                arguments={"x-stream-offset": "first" if offset is None else offset},
            )
            while len(got) < max_messages:
                try:
                    conn.drain_events(timeout=STREAM_IDLE_S)
                except TimeoutError:  # socket.timeout
                    break
                if len(unacked) >= STREAM_PREFETCH // 2:  # credit for the next deliveries
                    channel.basic_ack(unacked[-1], multiple=True)
                    unacked.clear()
        return Received(got, next_offset)

    def acknowledge(self, handles: list[str]) -> int:
        return 0  # a stream is acknowledged by the offset in the sensor's cursor

    def dead_letter(self, message: Message, reason: str) -> bool:
        import amqp

        with _connect(self.target) as conn:
            conn.channel().basic_publish(
                amqp.Message(message.body, application_headers={"reason": reason[:1000]}),
                exchange="",
                routing_key=self.target.dead_letter_queue,
            )
        return True


def open_queue(spec: str) -> UploadQueue:
    """The queue ``DATALOOP_UPLOAD_QUEUE`` names: ``sqs:<queue URL>`` (its dead-letter queue
    from ``DATALOOP_UPLOAD_DLQ`` or the queue's redrive policy), or
    ``amqp://user:password@host:port/vhost?exchange=E&queue=Q`` (a RabbitMQ stream, declared
    if missing, bad messages to ``Q.dead``)."""
    kind, _, rest = spec.partition(":")
    if kind == "sqs" and rest:
        return SqsUploadQueue(
            rest,
            dead_letter_url=os.environ.get("DATALOOP_UPLOAD_DLQ") or None,
            visibility_s=int(os.environ.get("DATALOOP_QUEUE_VISIBILITY_S", VISIBILITY_S)),
        )
    if kind == "amqp":
        return AmqpStreamQueue(AmqpTarget.parse(spec))
    raise ValueError(
        f"DATALOOP_UPLOAD_QUEUE={spec!r}: expected 'sqs:<queue URL>' or "
        "'amqp://user:password@host:port/vhost?exchange=E&queue=Q', for example "
        "sqs:https://sqs.eu-central-1.amazonaws.com/123456789012/uploads or "
        "amqp://dataloop:secret@rabbitmq:5672/%2f?queue=dataloop-uploads"
    )
