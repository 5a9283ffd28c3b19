"""Command-line flags for osken-manager: ``--user-flags <this file>``.

osken-manager imports this file before it parses its command line, so the
app's ``[nvo3]`` options become flags such as ``--nvo3-rest_listen_port``.
"""

from nvo3_ryu_app import settings

settings.register(cli=True)
