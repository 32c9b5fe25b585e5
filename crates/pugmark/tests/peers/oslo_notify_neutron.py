"""Publish one Neutron notification exactly as neutron does: oslo.messaging's Notifier
(neutron/common/rpc.py get_notifier('network') -> publisher_id 'network.HOST'), driver
messagingv2, control exchange `neutron`, topic `notifications` (routing key
notifications.info); the payload is what neutron/api/v2/base.py Controller._update sends for a
floating IP: {"floatingip": {...}}.

usage: oslo_notify_neutron.py URL
"""
import sys
import warnings

warnings.filterwarnings("ignore")

import oslo_messaging
from oslo_config import cfg


def main():
    url = sys.argv[1]
    oslo_messaging.set_transport_defaults(control_exchange="neutron")
    conf = cfg.ConfigOpts()
    conf([])
    transport = oslo_messaging.get_notification_transport(conf, url=url)
    notifier = oslo_messaging.Notifier(
        transport,
        publisher_id="network.host",
        driver="messagingv2",
        topics=["notifications"],
    )
    fip = {
        "id": "c0ffee00-0000-4000-8000-0000000000aa",
        "tenant_id": "p" * 32,
        "project_id": "p" * 32,
        "floating_network_id": "a0b1c2d3-e4f5-4607-8809-1a2b3c4d5e6f",
        "router_id": "3c4d5e6f-7a8b-4c9d-0e1f-2a3b4c5d6e7f",
        "fixed_ip_address": "10.1.2.10",
        "floating_ip_address": "203.0.113.77",
        "port_id": "1d2c3b4a-0000-4b00-9b00-0000000000aa",
        "status": "ACTIVE",
        "description": "",
        "tags": [],
        "revision_number": 2,
    }
    notifier.info({}, "floatingip.update.end", {"floatingip": fip})
    transport.cleanup()


if __name__ == "__main__":
    main()
