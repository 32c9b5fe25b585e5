"""Publish nova-style notifications exactly as nova does: oslo.messaging's Notifier with the
messagingv2 driver (the oslo envelope) on the `nova` control exchange, topic
`versioned_notifications` (routing key versioned_notifications.info).

usage: oslo_notify.py URL COUNT PREFIX [--raw TEXT | --raw-file PATH] [--pace N:MS] [--ip ADDR]
  --raw TEXT also publishes one message whose body is TEXT (not JSON), with kombu, to
  nova / notifications.info; --raw-file PATH the same with the file's bytes as the body
  (bodies larger than an argument may be).
  --pace N:MS sleeps MS milliseconds after every N notifications (a stream that lasts).
  --ip ADDR gives every instance the fixed address ADDR (the VM a test's sender is).
"""
import sys
import time
import uuid
import warnings

warnings.filterwarnings("ignore")

import oslo_messaging
from oslo_config import cfg


def main():
    url, count, prefix = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    oslo_messaging.set_transport_defaults(control_exchange="nova")
    conf = cfg.ConfigOpts()
    conf([])
    transport = oslo_messaging.get_notification_transport(conf, url=url)
    notifier = oslo_messaging.Notifier(
        transport,
        publisher_id="nova-compute:compute-1",
        driver="messagingv2",
        topics=["versioned_notifications"],
    )
    pace_n, pace_ms = 0, 0
    if "--pace" in sys.argv:
        n, ms = sys.argv[sys.argv.index("--pace") + 1].split(":")
        pace_n, pace_ms = int(n), int(ms)
    ips = []
    if "--ip" in sys.argv:
        ips = [{
            "nova_object.name": "IpPayload",
            "nova_object.namespace": "nova",
            "nova_object.version": "1.0",
            "nova_object.data": {
                "address": sys.argv[sys.argv.index("--ip") + 1],
                "mac": "fa:16:3e:00:00:01",
                "version": 4,
            },
        }]
    for i in range(count):
        if pace_n and i and i % pace_n == 0:
            time.sleep(pace_ms / 1000)
        payload = {
            "nova_object.name": "InstanceCreatePayload",
            "nova_object.namespace": "nova",
            "nova_object.version": "1.12",
            "nova_object.data": {
                "uuid": str(uuid.uuid4()),
                "display_name": f"{prefix}-{i:06d}",
                "host_name": f"{prefix}-{i:06d}",
                "host": "compute-1",
                "tenant_id": "p" * 32,
                "user_id": "u" * 32,
                "state": "active",
                "ip_addresses": ips,
            },
        }
        notifier.info({}, "instance.create.end", payload)
    body = None
    if "--raw" in sys.argv:
        body = sys.argv[sys.argv.index("--raw") + 1].encode()
    if "--raw-file" in sys.argv:
        with open(sys.argv[sys.argv.index("--raw-file") + 1], "rb") as f:
            body = f.read()
    if body is not None:
        from kombu import Connection, Exchange, Producer

        # kombu spells the transport amqp:// (py-amqp, AMQP 0-9-1); oslo calls it rabbit://.
        with Connection(url.replace("rabbit://", "amqp://", 1)) as c:
            Producer(c).publish(
                body,
                exchange=Exchange("nova", type="topic", durable=False),
                routing_key="notifications.info",
                content_type="application/octet-stream",
                content_encoding="binary",
            )
    transport.cleanup()


if __name__ == "__main__":
    main()
