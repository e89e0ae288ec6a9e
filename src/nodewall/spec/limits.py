"""Every size nodewall bounds its input by, in one place, with the reasoning behind each number.

The spec's own limits (SPEC section 2: 8000 ip_filter entries, 43-character networks,
1024-character descriptions) decide how large a valid input can be; the byte limits on files
and request bodies are derived from them, so that the largest valid input always fits and
anything much larger is refused while it is read, before it costs memory or time. Constants
only: this module imports nothing and does no work.
"""

from __future__ import annotations

MAX_IP_FILTER = 8000
MAX_NETWORK_CHARS = 43
MAX_DESCRIPTION_CHARS = 1024

#: The deepest a valid spec nests collections is 6 (document > services > service >
#: user_config > ip_filter > entry); a little room beyond that, never thousands.
MAX_DEPTH = 32

#: One ip_filter entry at its largest as JSON text: the keys and punctuation of
#: `{"network":"...","description":"..."},` plus a 43-character network and a 1024-character
#: description of 4-byte UTF-8 characters (the longest a character is, sent as UTF-8).
ENTRY_BYTES = (len('{"network":"","description":""},') + MAX_NETWORK_CHARS
               + 4 * MAX_DESCRIPTION_CHARS)
_MIB = 1 << 20
#: The largest request body: a service whose ip_filter has the most and largest entries
#: (8000 x 4171 bytes = 33.4 MB), plus 1 MiB for the rest of the body (the service's other
#: fields and user_config keys, indentation), rounded up to whole MiB: 33 MiB. A body written
#: with `\\uXXXX` escapes for non-ASCII description characters can be larger than this and
#: is refused (send such text as UTF-8).
MAX_BODY_BYTES = -(-(MAX_IP_FILTER * ENTRY_BYTES + _MIB) // _MIB) * _MIB
#: A request body above this size waits for one of few slots before it is read (see
#: `nodewall.server.guard`), so that concurrent large writes cannot pile up in memory.
LARGE_BODY_BYTES = _MIB
#: The largest body a node token may send: its status report is at most a 64-character
#: version, a 32-character backend name and a 4096-character error, even written with
#: `\\uXXXX` escapes of surrogate pairs (12 bytes a character) under 50 KB; 64 KiB.
NODE_BODY_BYTES = 64 * 1024

#: A spec file holds a whole project: room for two services at the largest body each, or
#: hundreds of services with ordinary allow-lists. Read as at most this many bytes plus one.
MAX_SPEC_BYTES = 2 * MAX_BODY_BYTES

#: Integer literals longer than this are refused while reading (no port or count needs more;
#: Python refuses to convert past 4300 digits, with an error a user should never see).
MAX_INTEGER_DIGITS = 40
