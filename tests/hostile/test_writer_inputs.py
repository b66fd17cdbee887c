"""No input makes the writer's handler raise: hostile bodies and events through the real module.

The invariant, for any event: ``lambda_handler`` returns ``{"batchItemFailures": [...]}``, and
every record either settled (the ledger ``_efsqlite_commands`` has a row for it, read with
the engine's SQLite from the real files) or is listed in ``batchItemFailures``. A record without a
usable ``messageId`` is covered by an empty ``itemIdentifier``, which Lambda reads as "the
whole batch failed". Explicit cases pin the answer for each family: NaN and Infinity, ``v``
that is not the integer 1, lone surrogates, bytes that are not UTF-8, deep nesting, integers
beyond 64 bits, forged sequence numbers, events that are not objects, migration files that are
not UTF-8.
"""

from __future__ import annotations

import itertools
import json
import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from efsqlite.core import ledger
from efsqlite.write.wire import body_text
from hypothesis import HealthCheck, given, settings
from hypothesis import event as event_label
from hypothesis import strategies as st

from tests.support.events import FakeLambdaContext, sqs_event, sqs_record
from tests.support.sqlite_files import open_db

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")
LEDGER = ledger.COMMANDS_TABLE
_ids = itertools.count()


# -- helpers ----------------------------------------------------------------------------------
def fresh(prefix: str = "c") -> str:
    return f"{prefix}-{next(_ids)}-{uuid.uuid4().hex[:8]}"


def put(cid: str, value: Any = "x", db: str = "main") -> dict[str, Any]:
    return {
        "v": 1,
        "id": cid,
        "db": db,
        "statements": [{"sql": "INSERT INTO kv (k, v) VALUES (?, ?)", "params": [cid, value]}],
    }


def with_literal(value: dict[str, Any], literal: str, *, ascii_only: bool = True) -> str:
    """``value`` as JSON text, with the string ``"@@"`` replaced by ``literal`` verbatim."""
    return json.dumps(value, ensure_ascii=ascii_only).replace('"@@"', literal)


def named_put(cid: str, **extra: Any) -> dict[str, Any]:
    args = {"k": cid, "v": "x", **extra}
    return {"v": 1, "id": cid, "db": "main", "command": "put", "args": args}


def record_with_body(body: object, **kw: Any) -> dict[str, Any]:
    """A Lambda-shaped record whose body is any value (a str Lambda could not hash, bytes...)."""
    record = sqs_record("placeholder", **kw)
    record["body"] = body
    return record


def invoke(app: ModuleType, event: object) -> dict[str, Any]:
    response: dict[str, Any] = app.lambda_handler(event, FakeLambdaContext())
    return response


def failures(response: dict[str, Any]) -> list[str]:
    return [item["itemIdentifier"] for item in response["batchItemFailures"]]


def ledger_rows(data_dir: Path) -> list[tuple[Any, ...]]:
    """(db, id, outcome, error_type, message_id) of every ledger row in every database file."""
    found: list[tuple[Any, ...]] = []
    for path in sorted(data_dir.glob("*.sqlite")):
        with open_db(path, readonly=True) as conn:
            found += [
                (path.stem, *row)
                for row in conn.execute(f"SELECT id, outcome, error_type, message_id FROM {LEDGER}")
            ]
    return found


def outcome_of(data_dir: Path, command_id: str, db: str = "main") -> tuple[str, str | None]:
    with open_db(data_dir / f"{db}.sqlite") as conn:
        row = conn.execute(
            f"SELECT outcome, error_type FROM {LEDGER} WHERE id = ?", (command_id,)
        ).fetchone()
    assert row is not None, f"no ledger row for {command_id!r}"
    return row[0], row[1]


def kv_value(data_dir: Path, key: str) -> Any:
    with open_db(data_dir / "main.sqlite") as conn:
        row = conn.execute("SELECT v FROM kv WHERE k = ?", (key,)).fetchone()
    return None if row is None else row[0]


def claimed_ids(body: object) -> set[str]:
    """The ids a body claims (top level and packed elements), as a lenient reader sees them."""
    try:
        value = json.loads(body_text(body)) if isinstance(body, str | bytes) else None
    except (ValueError, RecursionError):
        return set()
    found: set[str] = set()
    if isinstance(value, dict):
        elements = value.get("commands")
        for item in [value, *(elements if isinstance(elements, list) else [])]:
            if isinstance(item, dict) and isinstance(item.get("id"), str):
                found.add(item["id"])
    return found


def check_invariant(event: object, response: object, data_dir: Path) -> None:
    """A dict answer; every record settled in the ledger or listed; listed ones not settled."""
    assert isinstance(response, dict) and set(response) == {"batchItemFailures"}
    items = response["batchItemFailures"]
    assert isinstance(items, list)
    assert all(isinstance(i, dict) and isinstance(i.get("itemIdentifier"), str) for i in items)
    listed = {i["itemIdentifier"] for i in items}
    records = event.get("Records") if isinstance(event, dict) else None
    if not isinstance(records, list):
        assert listed == {""}, "an event without a Records list must fail as a whole"
        return
    ids = [r.get("messageId") if isinstance(r, dict) else None for r in records]
    known = {m for m in ids if isinstance(m, str) and m}
    assert listed <= known | {""}, "an itemIdentifier that names no record of the event"
    rows = ledger_rows(data_dir)
    settled_messages = {row[4] for row in rows}
    settled_ids = {row[1] for row in rows}
    if "" in listed:
        event_label("whole batch handed back")
        return  # Lambda fails the whole batch: every record comes back
    for raw, message_id in zip(records, ids, strict=True):
        assert isinstance(message_id, str) and message_id, f"nameless record not covered: {raw!r}"
        if message_id in listed:
            assert message_id not in settled_messages, "reported failed, yet settled"
            event_label("a record handed back")
            continue
        event_label("a record settled")
        body = raw.get("body") if isinstance(raw, dict) else None
        assert message_id in settled_messages or claimed_ids(body) & settled_ids, (
            f"record {message_id} is neither settled nor reported failed"
        )


@pytest.fixture
def app(cold_start_writer: Callable[[], ModuleType]) -> ModuleType:
    return cold_start_writer()


# -- strategies -------------------------------------------------------------------------------
_any_char = st.characters(exclude_categories=())  # surrogates included on purpose
_text = st.text(_any_char, max_size=12)
_scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.integers(min_value=2**62, max_value=2**70)
    | st.floats(allow_nan=True, allow_infinity=True)
    | _text
)
json_values = st.recursive(
    _scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(_text, inner, max_size=4),
    max_leaves=12,
)
_keys = st.sampled_from(["v", "id", "db", "statements", "command", "args", "commands", "sql"])


@st.composite
def valid_command(draw: st.DrawFn) -> dict[str, Any]:
    cid = fresh()
    if draw(st.booleans()):
        return put(cid, draw(st.sampled_from(["x", 1, 2.5, None, True])))
    return {"v": 1, "id": cid, "db": "main", "command": "put", "args": {"k": cid, "v": "x"}}


@st.composite
def mutated_command(draw: st.DrawFn) -> dict[str, Any]:
    command = draw(valid_command())
    for _ in range(draw(st.integers(1, 3))):
        action = draw(st.sampled_from(["set", "drop", "param", "arg", "version"]))
        if action == "set":
            command[draw(_keys)] = draw(json_values)
        elif action == "drop":
            command.pop(draw(_keys), None)
        elif action == "param" and isinstance(command.get("statements"), list):
            statement = command["statements"][0] if command["statements"] else None
            if isinstance(statement, dict):
                statement["params"] = [command.get("id"), draw(json_values)]
        elif action == "arg" and isinstance(command.get("args"), dict):
            command["args"][draw(_text)] = draw(json_values)
        else:
            command["v"] = draw(st.sampled_from([1.0, True, "1", 0, 2, -1, 1e0, None]))
    return command


def serialize(value: Any, ascii_only: bool) -> str:
    return json.dumps(value, allow_nan=True, ensure_ascii=ascii_only)


@st.composite
def bodies(draw: st.DrawFn) -> object:
    kind = draw(st.sampled_from(["text", "json", "mutated", "packed", "bytes", "deep", "odd"]))
    if kind == "text":
        return draw(st.text(_any_char, max_size=60))
    if kind == "json":
        return serialize(draw(json_values), draw(st.booleans()))
    if kind == "mutated":
        return serialize(draw(mutated_command()), draw(st.booleans()))
    if kind == "packed":
        elements = draw(
            st.lists(valid_command() | mutated_command() | json_values, min_size=1, max_size=5)
        )
        envelope: dict[str, Any] = {"v": 1, "db": "main", "commands": elements}
        if draw(st.booleans()):
            envelope[draw(_keys)] = draw(json_values)
        return serialize(envelope, draw(st.booleans()))
    if kind == "bytes":
        return draw(st.binary(max_size=40)) + serialize(put(fresh()), True).encode()
    if kind == "deep":
        depth = draw(st.integers(150, 3000))
        return with_literal({"id": fresh("deep"), "x": "@@"}, "[" * depth + "1" + "]" * depth)
    return draw(json_values)  # not a string at all


_sequence_numbers = st.one_of(
    st.integers(0, 10**30).map(str),
    st.sampled_from(
        ["\u0661\u0662\u0663", "+5", " 5", "5_0", "", "1" * 41, "-1", "0x10", "\u00b2", "5 "]
    ),
    json_values,
)


@st.composite
def records(draw: st.DrawFn) -> object:
    record = record_with_body(
        draw(bodies()),
        group=draw(st.sampled_from(["main", "main", "main", "other"])),
    )
    for _ in range(draw(st.integers(0, 2))):
        damage = draw(st.sampled_from(["seq", "group", "mid", "count", "attrs", "drop", "swap"]))
        if damage in {"seq", "group", "count"} and not isinstance(record.get("attributes"), dict):
            continue
        if damage == "seq":
            record["attributes"]["SequenceNumber"] = draw(_sequence_numbers)
        elif damage == "group":
            record["attributes"]["MessageGroupId"] = draw(
                st.sampled_from(["Main", "", "../etc", "a" * 65]) | json_values
            )
        elif damage == "mid":
            record["messageId"] = draw(st.sampled_from(["", "\ud800"]) | json_values)
        elif damage == "count":
            record["attributes"]["ApproximateReceiveCount"] = draw(
                st.sampled_from(["x", "-1", "1.0", "\u0661"]) | json_values
            )
        elif damage == "attrs":
            record["attributes"] = draw(json_values)
        elif damage == "drop":
            record.pop(draw(st.sampled_from(["body", "attributes", "messageId"])), None)
        else:
            return draw(json_values)  # not a record at all
    return record


@st.composite
def events(draw: st.DrawFn) -> object:
    if draw(st.integers(0, 9)) == 0:
        return draw(json_values | st.fixed_dictionaries({"Records": json_values}))
    return {"Records": draw(st.lists(records(), max_size=6))}


_property = settings(
    max_examples=int(os.environ.get("EFSQLITE_HOSTILE_EXAMPLES", "300")),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


# -- properties -------------------------------------------------------------------------------
@_property
@given(body=bodies())
def test_any_body_is_settled_or_handed_back(app: ModuleType, data_dir: Path, body: object) -> None:
    # GIVEN any body in an otherwise well-formed record, behind a valid neighbour
    neighbour, record = sqs_record(put(fresh())), record_with_body(body)
    event = sqs_event(neighbour, record)
    # WHEN the real handler runs the event
    response = invoke(app, event)
    # THEN it answers, and every record settled or is reported failed
    check_invariant(event, response, data_dir)
    assert neighbour["messageId"] not in failures(response)
    # AND a string body settles (applied or rejected) unless it waits for a schema version
    if isinstance(body, str | bytes) and record["messageId"] in failures(response):
        assert "expect_schema" in body_text(body), "a text body was not settled"


@_property
@given(event=events())
def test_any_event_gets_an_answer(app: ModuleType, data_dir: Path, event: object) -> None:
    # WHEN the real handler runs any event, of any shape
    response = invoke(app, event)
    # THEN it answers, and every record settled or is reported failed
    check_invariant(event, response, data_dir)


# -- strict JSON numbers ----------------------------------------------------------------------
@pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity", "1e400", "-1e999"])
@pytest.mark.parametrize("where", ["param", "arg", "nested arg", "packed param"])
def test_non_finite_numbers_are_rejected_under_the_id(
    app: ModuleType, data_dir: Path, literal: str, where: str
) -> None:
    # GIVEN a command carrying a number JSON has no place for (or that no double holds)
    cid = fresh("nan")
    shapes = {
        "param": with_literal(put(cid, "@@"), literal),
        "arg": with_literal(named_put(cid, v="@@"), literal),
        "nested arg": with_literal(named_put(cid, z=[1, {"y": ["@@"]}]), literal),
        "packed param": with_literal({"v": 1, "db": "main", "commands": [put(cid, "@@")]}, literal),
    }
    # WHEN it is applied
    response = invoke(app, sqs_event(sqs_record(shapes[where])))
    # THEN it is rejected under its id, and nothing was written (SQLite stores NaN as NULL)
    assert failures(response) == []
    assert outcome_of(data_dir, cid) == ("rejected", "InvalidMessage")
    assert kv_value(data_dir, cid) is None


@pytest.mark.parametrize("version", ["1.0", "true", '"1"', "1e0", "1.5", "false", "null"])
def test_v_must_be_the_integer_1(app: ModuleType, data_dir: Path, version: str) -> None:
    cid = fresh("v")
    body = json.dumps(put(cid)).replace('"v": 1', f'"v": {version}')
    assert failures(invoke(app, sqs_event(sqs_record(body)))) == []
    assert outcome_of(data_dir, cid) == ("rejected", "InvalidMessage")
    assert kv_value(data_dir, cid) is None


@pytest.mark.parametrize(
    ("value", "accepted"),
    [(2**63 - 1, True), (-(2**63), True), (2**63, False), (-(2**63) - 1, False), (2**70, False)],
)
def test_integers_beyond_64_bits_are_refused_not_rounded(
    app: ModuleType, data_dir: Path, value: int, accepted: bool
) -> None:
    # GIVEN an integer param at or beyond SQLite's 64-bit range
    cid = fresh("int")
    assert failures(invoke(app, sqs_event(sqs_record(put(cid, value))))) == []
    # THEN one inside is stored exactly; one outside is rejected, never stored as a float
    if accepted:
        assert outcome_of(data_dir, cid) == ("applied", None)
        assert kv_value(data_dir, cid) == str(value)  # TEXT column: exact digits, no float
    else:
        assert outcome_of(data_dir, cid) == ("rejected", "InvalidMessage")
        assert kv_value(data_dir, cid) is None


def test_a_number_too_long_to_read_is_unparseable(app: ModuleType, data_dir: Path) -> None:
    record = sqs_record(json.dumps(put(fresh())).replace('"x"', "9" * 5000))
    assert failures(invoke(app, sqs_event(record))) == []
    assert outcome_of(data_dir, f"message:{record['messageId']}") == (
        "rejected",
        "UnparseableBody",
    )


# -- text that is not Unicode -----------------------------------------------------------------
def test_lone_surrogate_escape_is_rejected_under_the_id(app: ModuleType, data_dir: Path) -> None:
    # GIVEN a body whose JSON escapes a lone surrogate (grammatical JSON, not Unicode text)
    cid = fresh("esc")
    body = json.dumps(put(cid)).replace('"x"', '"\\ud800"')
    # WHEN it is applied
    assert failures(invoke(app, sqs_event(sqs_record(body)))) == []
    # THEN it is rejected under its id, with the body kept as an excerpt
    assert outcome_of(data_dir, cid) == ("rejected", "InvalidMessage")
    with open_db(data_dir / "main.sqlite") as conn:
        [(excerpt,)] = conn.execute(f"SELECT body_excerpt FROM {LEDGER} WHERE id = ?", (cid,))
    assert "\\ud800" in excerpt


@pytest.mark.parametrize("where", ["param", "sql", "args key", "packed param"])
def test_python_str_with_a_lone_surrogate_is_rejected_under_the_id(
    app: ModuleType, data_dir: Path, where: str
) -> None:
    # GIVEN a body that is a Python str holding a lone surrogate, as a Lambda event's JSON
    # decoding yields for "\ud800" in the event
    cid = fresh("raw")
    bodies_by_place = {
        "param": with_literal(put(cid, "@@"), '"\ud800"', ascii_only=False),
        "sql": json.dumps(put(cid)).replace("INSERT", "INSERT\udfff"),
        "args key": with_literal(named_put(cid, z="@@"), '1, "\ud83d": 1', ascii_only=False),
        "packed param": with_literal(
            {"v": 1, "db": "main", "commands": [put(cid, "@@")]}, '"\udc00"', ascii_only=False
        ),
    }
    response = invoke(app, sqs_event(record_with_body(bodies_by_place[where])))
    # THEN it settles as rejected under its id (packed: the element's own answer)
    assert failures(response) == []
    outcome, error_type = outcome_of(data_dir, cid)
    assert outcome == "rejected"
    assert error_type in {"InvalidMessage", "InvalidParams"}
    assert kv_value(data_dir, cid) is None


def test_bytes_that_are_not_utf8_are_rejected_under_the_id(app: ModuleType, data_dir: Path) -> None:
    cid = fresh("bytes")
    body = json.dumps(put(cid)).encode().replace(b'"x"', b'"\xff\xfe"')
    assert failures(invoke(app, sqs_event(record_with_body(body)))) == []
    assert outcome_of(data_dir, cid) == ("rejected", "InvalidMessage")


@pytest.mark.parametrize("escaped", [True, False])
def test_an_id_that_is_not_text_is_rejected_under_the_message_id(
    app: ModuleType, data_dir: Path, escaped: bool
) -> None:
    # GIVEN a body whose own id holds a lone surrogate: no ledger can store that id
    body = json.dumps(put("x")).replace(
        '"id": "x"', '"id": "\\ud800"' if escaped else '"id": "\ud800"'
    )
    record = record_with_body(body)
    # WHEN it is applied
    assert failures(invoke(app, sqs_event(record))) == []
    # THEN it is rejected under its message id
    assert outcome_of(data_dir, f"message:{record['messageId']}") == (
        "rejected",
        "UnparseableBody",
    )


def test_packed_element_whose_id_is_not_text_is_rejected(app: ModuleType, data_dir: Path) -> None:
    good = fresh("good")
    element = {"v": 1, "id": "@@", "db": "main", "statements": [{"sql": "SELECT 1"}]}
    body = with_literal({"v": 1, "db": "main", "commands": [element, put(good)]}, '"\\ud800"')
    response = invoke(app, sqs_event(sqs_record(body)))
    assert failures(response) == []
    assert outcome_of(data_dir, good) == ("applied", None)


def test_deep_nesting_is_unparseable_not_a_recursion_error(app: ModuleType, data_dir: Path) -> None:
    records = [
        sqs_record(with_literal({"id": "deep", "x": "@@"}, "[" * depth + "1" + "]" * depth))
        for depth in (250, 5000, 200_000)
    ]
    assert failures(invoke(app, sqs_event(*records))) == []
    for record in records:
        assert outcome_of(data_dir, f"message:{record['messageId']}") == (
            "rejected",
            "UnparseableBody",
        )


# -- forged sequence numbers ------------------------------------------------------------------
FORGED = [
    "\u0661\u0662\u0663",
    "+5",
    " 5",
    "5 ",
    "5_0",
    "",
    "1" * 41,
    "-1",
    "0x10",
    "\u00b2",
    "5.0",
    5,
    None,
    True,
]


@pytest.mark.parametrize("sequence_number", FORGED)
def test_forged_sequence_number_is_unroutable_and_holds_its_group(
    app: ModuleType, data_dir: Path, sequence_number: object
) -> None:
    # GIVEN a record with a forged sequence number, a later record of its group, and a record
    # of another group
    forged = sqs_record(put(fresh("forged")))
    forged["attributes"]["SequenceNumber"] = sequence_number
    later = sqs_record(put(fresh("later")))
    elsewhere = sqs_record(put(fresh("elsewhere"), db="other"), group="other")
    # WHEN the handler runs them
    response = invoke(app, sqs_event(forged, later, elsewhere))
    # THEN the forged one and the later one of its group are handed back, never stored; the
    # other group applies
    assert failures(response) == [forged["messageId"], later["messageId"]]
    stored = {row[4] for row in ledger_rows(data_dir)}
    assert forged["messageId"] not in stored and later["messageId"] not in stored
    assert elsewhere["messageId"] in stored


# -- events that are not Lambda's -------------------------------------------------------------
@pytest.mark.parametrize(
    "event",
    [None, [], [{"Records": []}], "Records", 5, 1.5, True, {}, {"Records": None}, {"Records": "x"}],
)
def test_event_that_is_not_an_sqs_event_fails_as_a_whole(app: ModuleType, event: object) -> None:
    # An empty itemIdentifier: Lambda fails the whole batch, so nothing is acknowledged unseen.
    assert invoke(app, event) == {"batchItemFailures": [{"itemIdentifier": ""}]}


def test_empty_records_list_is_an_empty_answer(app: ModuleType) -> None:
    assert invoke(app, {"Records": []}) == {"batchItemFailures": []}


@pytest.mark.parametrize(
    "damage",
    [
        lambda r: r.update(messageId=""),
        lambda r: r.update(messageId=None),
        lambda r: r.update(messageId=12),
        lambda r: r.update(messageId="\ud800"),
        lambda r: r.pop("messageId"),
    ],
)
def test_record_without_a_usable_message_id_fails_the_batch(
    app: ModuleType, data_dir: Path, damage: Callable[[dict[str, Any]], object]
) -> None:
    # GIVEN a good record of another group, then a record that cannot be named
    good = sqs_record(put(fresh("good"), db="other"), group="other")
    nameless = sqs_record(put(fresh("nameless")))
    damage(nameless)
    # WHEN the handler runs them
    response = invoke(app, sqs_event(good, nameless))
    # THEN the nameless one is reported as "" (the whole batch comes back); the good one
    # applied and will be a duplicate on redelivery
    assert failures(response) == [""]
    assert good["messageId"] in {row[4] for row in ledger_rows(data_dir)}


@pytest.mark.parametrize(
    "damage",
    [
        lambda r: r.update(attributes=None),
        lambda r: r.update(attributes=["SequenceNumber"]),
        lambda r: r["attributes"].update(MessageGroupId=7),
        lambda r: r["attributes"].update(ApproximateReceiveCount="x"),
        lambda r: r["attributes"].update(ApproximateReceiveCount="\u0661"),
        lambda r: r["attributes"].update(ApproximateReceiveCount=3),
        lambda r: r.update(body=None),
        lambda r: r.update(body={"v": 1}),
        lambda r: r.update(body=12),
    ],
)
def test_ill_typed_record_is_handed_back_by_message_id(
    app: ModuleType, data_dir: Path, damage: Callable[[dict[str, Any]], object]
) -> None:
    bad = sqs_record(put(fresh("bad")))
    damage(bad)
    response = invoke(app, sqs_event(bad))
    assert failures(response) == [bad["messageId"]]
    assert bad["messageId"] not in {row[4] for row in ledger_rows(data_dir)}


def test_record_that_is_not_an_object_holds_every_later_record(app: ModuleType) -> None:
    # Its group is unknown, so any later record may be of its group: FIFO order holds them.
    later = sqs_record(put(fresh("later")))
    response = invoke(app, {"Records": [["not", "a", "record"], later]})
    assert failures(response) == ["", later["messageId"]]


# -- the last resort --------------------------------------------------------------------------
def test_unexpected_writer_error_hands_back_every_record(
    app: ModuleType, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN a writer with a bug (injected: no real input reaches this path any more)
    def broken(event: object, **_: object) -> object:
        raise RuntimeError("a bug")

    monkeypatch.setattr(app.writer, "handle_event", broken)
    named, nameless = sqs_record(put(fresh())), sqs_record(put(fresh()))
    nameless.pop("messageId")
    # WHEN an event arrives
    response = invoke(app, sqs_event(named, nameless))
    # THEN every record is reported failed (nameless: the whole batch), nothing is raised
    assert failures(response) == [named["messageId"], ""]


def test_logging_failure_after_the_batch_settled_keeps_its_answer(
    app: ModuleType, data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN metrics that break after the writer has answered
    def broken(*_: object, **__: object) -> None:
        raise ValueError("metrics backend broke")

    monkeypatch.setattr(app.metrics, "add_metric", broken)
    record = sqs_record(put(fresh()))
    # WHEN the batch runs, THEN the writer's answer stands: the record is not redelivered
    assert invoke(app, sqs_event(record)) == {"batchItemFailures": []}
    assert record["messageId"] in {row[4] for row in ledger_rows(data_dir)}


# -- migrations -------------------------------------------------------------------------------
@pytest.fixture
def bad_migrations(tmp_path: Path) -> Iterator[Path]:
    folder = tmp_path / "bad-migrations"
    folder.mkdir()
    (folder / "0001_schema.sql").write_text("CREATE TABLE kv (k TEXT PRIMARY KEY, v TEXT);")
    yield folder


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"CREATE TABLE t (x TEXT DEFAULT '\xff');", "not UTF-8"),
        (b"CREATE TABLE t (x);\x00", "NUL"),
    ],
)
def test_migration_that_is_not_text_fails_the_batch_naming_the_file(
    writer_env: dict[str, str],
    bad_migrations: Path,
    cold_start_writer: Callable[[], ModuleType],
    monkeypatch: pytest.MonkeyPatch,
    content: bytes,
    message: str,
) -> None:
    # GIVEN a deployment whose second migration is not UTF-8 text
    (bad_migrations / "0002_broken.sql").write_bytes(content)
    monkeypatch.setenv("EFSQLITE_MIGRATIONS_DIR", str(bad_migrations))
    app = cold_start_writer()
    record = sqs_record(put(fresh()))
    # WHEN a command arrives, THEN it is handed back (failed, retried) rather than raised
    result = app.writer.handle_event(sqs_event(record))
    assert result.failed_message_ids() == [record["messageId"]]
    [batch] = result.batches
    assert batch.failure_type == "MigrationFailed"
    assert "0002_broken.sql" in (batch.failure_message or "") and message in (
        batch.failure_message or ""
    )
    assert failures(invoke(app, sqs_event(record))) == [record["messageId"]]


def test_body_text_is_identity_for_text_and_escapes_lone_surrogates() -> None:
    assert body_text('{"a": "é😀"}') == '{"a": "é😀"}'
    assert body_text(b'{"a": "\xc3\xa9"}') == '{"a": "é"}'
    assert json.loads(body_text('["\ud800"]')) == json.loads('["\\ud800"]')
    assert body_text(b'["\xff"]') == '["\\udcff"]'
    # after an odd run of backslashes (an escape in progress) the escape stays invalid
    with pytest.raises(ValueError):
        json.loads(body_text('["\\\ud800"]'))
