"""An independent EWS client against exchange-sim (EN-6).

Drives exchange-sim with the exchangelib package, which we did not write:
GetUserAvailability in a time zone with daylight saving time (America/
Los_Angeles), so the simulator must read exchangelib's TimeZone element and
answer in local times as Exchange does. Exits 0 when every check holds,
1 with the reason otherwise.

Usage: availability.py BASE_URL CA_PEM ACCOUNT PASSWORD
"""

import datetime
import os
import sys

import requests

BASE, CA, ACCOUNT, PASSWORD = sys.argv[1:5]
# requests (under exchangelib) trusts the simulator's CA from here.
os.environ["REQUESTS_CA_BUNDLE"] = CA

from exchangelib import (  # noqa: E402
    BASIC,
    DELEGATE,
    Account,
    Build,
    Configuration,
    Credentials,
    EWSDateTime,
    EWSTimeZone,
    Version,
)
from exchangelib.protocol import BaseProtocol  # noqa: E402

BaseProtocol.TIMEOUT = 20

utc = datetime.timezone.utc
tomorrow = (datetime.datetime.now(utc) + datetime.timedelta(days=1)).date()
# Two meetings tomorrow, in UTC: one Busy, one Out of Office.
busy = (
    datetime.datetime(tomorrow.year, tomorrow.month, tomorrow.day, 17, 0, tzinfo=utc),
    datetime.datetime(tomorrow.year, tomorrow.month, tomorrow.day, 18, 0, tzinfo=utc),
)
oof = (
    datetime.datetime(tomorrow.year, tomorrow.month, tomorrow.day, 20, 30, tzinfo=utc),
    datetime.datetime(tomorrow.year, tomorrow.month, tomorrow.day, 21, 0, tzinfo=utc),
)
rows = "mailbox,start,end,busy_type\n" + "".join(
    f"alice@example.com,{s.isoformat()},{e.isoformat()},{t}\n"
    for (s, e), t in [(busy, "Busy"), (oof, "OOF")]
)
answer = requests.post(f"{BASE}/sim/calendars", data=rows, verify=CA, timeout=20)
if answer.status_code != 200:
    sys.exit(f"loading calendars failed: {answer.status_code} {answer.text}")

config = Configuration(
    service_endpoint=f"{BASE}/EWS/Exchange.asmx",
    credentials=Credentials(ACCOUNT, PASSWORD),
    auth_type=BASIC,
    version=Version(build=Build(15, 1, 2507, 6)),
)
account = Account(
    primary_smtp_address=ACCOUNT,
    config=config,
    autodiscover=False,
    access_type=DELEGATE,
)
tz = EWSTimeZone("America/Los_Angeles")
start = EWSDateTime(tomorrow.year, tomorrow.month, tomorrow.day, tzinfo=tz)
end = start + datetime.timedelta(days=1)
views = list(
    account.protocol.get_free_busy_info(
        accounts=[
            (account_for, "Required", False)
            for account_for in [
                Account(
                    primary_smtp_address=a,
                    config=config,
                    autodiscover=False,
                    access_type=DELEGATE,
                )
                for a in ["alice@example.com", "nobody@example.com"]
            ]
        ],
        start=start,
        end=end,
        merged_free_busy_interval=30,
        requested_view="DetailedMerged",
    )
)
if len(views) != 2:
    sys.exit(f"expected 2 answers, got {views!r}")
alice, nobody = views
if isinstance(alice, Exception):
    sys.exit(f"alice: {alice!r}")
# Compared as instants: exchangelib reads the local times in the zone it
# asked in; they must land where the rows put them.
events = sorted(
    (int(e.start.timestamp()), int(e.end.timestamp()), e.busy_type)
    for e in (alice.calendar_events or [])
)
expected = [
    (int(s.timestamp()), int(e.timestamp()), t)
    for (s, e), t in [(busy, "Busy"), (oof, "OOF")]
]
if events != expected:
    sys.exit(f"alice's events {events!r}, expected {expected!r}")
# The merged view: 48 half hours of the local day, a 2 at 09:00-10:00 PST
# (17:00-18:00 UTC in winter) or 10:00-11:00 PDT in summer.
if not alice.merged or len(alice.merged) != 48 or "2" not in alice.merged:
    sys.exit(f"alice's merged free/busy {alice.merged!r}")
if not isinstance(nobody, Exception) or "ErrorMailRecipientNotFound" not in type(nobody).__name__:
    sys.exit(f"nobody: expected ErrorMailRecipientNotFound, got {nobody!r}")
print("exchangelib: GetUserAvailability in America/Los_Angeles agrees")
