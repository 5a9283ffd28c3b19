"""nvo3_ryu_app: the NVO3 Information Mapping Authority as an os-ken app.

Run it with ``osken-manager nvo3_ryu_app.app`` (see README.md).
"""

__version__ = '0.1.0'
