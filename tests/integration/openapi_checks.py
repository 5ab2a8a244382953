"""A check schemathesis runs (as its hooks module) in test_openapi.py: a request the document
allows is refused with 400 or 422 only for a reason a JSON Schema cannot give. Schemathesis'
own positive_data_acceptance takes no reason at all, so the test turns it off for this one."""

from __future__ import annotations

from typing import Any

import schemathesis

# Refusals of a request the document allows, because of what is stored or of another field
# in it. Any other 400 or 422 to such a request is a document looser than the service.
NOT_IN_A_SCHEMA = {
    "bad_period",  # a period of a kind the board does not keep
    "bad_cursor",  # a cursor the service did not give out
    "duplicate_player",  # a player twice in one batch, or in their own party
    "metadata_too_large",  # the board's own metadata_max_bytes
    "score_out_of_range",  # an incr total past 2**53
    "party_too_large",  # the queue's team_size
    "unknown_region",  # a region the queue does not list
    "attributes_too_large",  # bytes of JSON
    "bad_ranks",  # one rank per team of that match
    "idempotency_key_reused",  # a key already used for another write to the board
    "player_required",  # a fresh seat asked for with the server key names its player
}


@schemathesis.check
def refused_only_for_what_a_schema_cannot_say(ctx: schemathesis.CheckContext, response: Any,
                                              case: schemathesis.Case) -> bool | None:
    meta = case.meta
    if meta is None or not meta.generation.mode.is_positive \
            or response.status_code not in (400, 422):
        return None
    try:
        code = response.json()["error"]["code"]
    except (ValueError, KeyError, TypeError):
        code = None
    if code not in NOT_IN_A_SCHEMA:
        raise AssertionError(f"a request the document allows was refused with "
                             f"{response.status_code} {code}: the document should say why")
    return None
