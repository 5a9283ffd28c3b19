"""Command-line flags for osken-manager: ``--user-flags <this file>``.

osken-manager imports this file before it parses its command line, so the
app's ``[nvo3]`` options become flags such as ``--nvo3-rest_listen_port``.
``python -m nvo3_ryu_app.flags`` prints this file's path (wherever the
package is installed, editable or not), for ``--user-flags "$(...)"``.
"""

import os

from nvo3_ryu_app import settings

if __name__ == '__main__':
    print(os.path.abspath(__file__))
else:
    settings.register(cli=True)
