"""The registration RPC takes an NVE's name wherever it takes its
datapath id, as REST and nvo3ctl do."""

from nvo3_ryu_app.authority import commands as C
from test_registration import (MAC, NVE1, assoc, client, ctl,  # noqa: F401
                               rpc_error, server)


def test_an_nve_is_named_by_its_name_too(ctl, server):  # noqa: F811
    _, addr = server
    ctl.execute(C.RegisterNVE(1, '10.0.0.1', name='hv1'))
    cl = client(addr)
    result = cl.call('associate', assoc(nve='hv1', ip='192.168.1.10'))
    assert result['tesid'] == {'vnid': 10, 'nve': NVE1, 'ts': MAC}
    error = rpc_error(cl, 'associate', assoc(nve='nobody', ip='192.168.1.10'))
    assert error['field'] == 'nve' and 'nobody' in error['message']
    cl.call('dissociate', [{'nve': 'hv1', 'mac': MAC}])
    assert not ctl.authority.db.attachments
