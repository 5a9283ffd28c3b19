"""A do-nothing OpenFlow 1.3 os-ken app: lets testbed tests check that
osken-manager starts and that NVEs connect through the socat relays, without
depending on the real app."""

from os_ken.base import app_manager
from os_ken.controller import ofp_event
from os_ken.controller.handler import CONFIG_DISPATCHER, set_ev_cls
from os_ken.ofproto import ofproto_v1_3


class NoopApp(app_manager.OSKenApp):
    OFP_VERSIONS = [ofproto_v1_3.OFP_VERSION]

    @set_ev_cls(ofp_event.EventOFPSwitchFeatures, CONFIG_DISPATCHER)
    def features(self, ev):
        self.logger.info("noop: switch %016x connected", ev.msg.datapath.id)
