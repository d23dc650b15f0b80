"""A request body to JSON within caps: parsed once per request, never for long on the event loop, and refused as
soon as a list or object passes its cap, so an oversized request costs its sender, not the loop.

`BodyCaps` holds the most items of each list or object per endpoint (from the request limits; the services keep
their own checks for direct callers), a bound for every other container and a nesting bound. `read_json` parses
a small body on the loop; a larger one in a worker thread (at most `LARGE_BODY_THREADS` at once, so large bodies
queue behind each other, not in front of small requests). There a body of few elements goes through `json.loads`
(one short hold of the GIL); one of many elements is walked container by container in Python, which lets the
interpreter hand the GIL back to the loop every few milliseconds and stops at the first container over its cap.
Every refusal is a 422 `ServiceError`: a cap's code, or `invalid_json` (not UTF-8 JSON, too deep, or a body
naming `tenant_id` twice).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from json.decoder import scanstring
from json.scanner import make_scanner
from typing import Any

from anyio import CapacityLimiter, to_thread
from anyio.lowlevel import RunVar
from starlette.types import Scope

from app.services.errors import ServiceError, invalid

LOOP_BYTES = 64 * 1024  # a body this small and of at most LOOP_ELEMENTS elements is parsed on the loop
LOOP_ELEMENTS = 4096
FEW_ELEMENTS = 20_000  # up to this many elements, one `json.loads` call (C speed, GIL held throughout)
COUNT_WINDOW = 1 << 20  # bytes scanned per `bytes.count` call
LARGE_BODY_THREADS = 2
MAX_ITEMS = 1000  # any list or object no cap names
MAX_KEY_TENANTS = 10_000  # /admin/keys `tenants`: its schema's bound (1,000) answers first
MAX_DEPTH = 32
UNIQUE_KEYS = ("tenant_id",)  # top-level keys a body may name once (the access gate reads them)

_PARSED = "json_body"  # the request's parsed body, in `scope["state"]`
_TENANT_ACTION = re.compile(r"^/tenants/[^/]+/([a-z]+)$")
_WHITESPACE = re.compile(r"[ \t\n\r]*")
_SPACE = " \t\n\r"
_scan_value = make_scanner(json.JSONDecoder())  # the C scanner: one JSON value at an index (used for scalars)


class Cap:
    """The most items of one list or object, and how a request over it is refused."""

    __slots__ = ("code", "limit", "noun", "where")

    def __init__(self, limit: int, code: str, noun: str, where: str = "") -> None:
        self.limit = limit
        self.code = code
        self.noun = noun
        self.where = where  # e.g. " for /suggest", as the service words its own limit

    def error(self, path: str, count: int | None) -> ServiceError:
        counted = f"more than {self.limit}" if count is None else str(count)
        return invalid(self.code, f"{path or 'the body'}: {counted} {self.noun}; the limit{self.where} is {self.limit}")


class Shape:
    """The caps of one value of a body: its own, its named fields' and its items'; anything else gets `rest`."""

    __slots__ = ("cap", "fields", "items", "rest")

    def __init__(self, cap: Cap, rest: Shape | None = None) -> None:
        self.cap = cap
        self.fields: dict[str, Shape] = {}
        self.items: Shape | None = None
        self.rest = rest or self

    def field(self, key: str) -> Shape:
        return self.fields.get(key) or self.rest

    def item(self) -> Shape:
        return self.items or self.rest


class BodyCaps:
    """Caps of the request bodies of each endpoint, from the request limits (`max_pool`: /suggest's texts)."""

    def __init__(
        self,
        max_examples: int = 5000,
        max_labels: int = 500,
        max_texts: int = 256,
        max_pool: int = 5000,
        max_items: int = MAX_ITEMS,
        max_depth: int = MAX_DEPTH,
    ) -> None:
        self.max_depth = max_depth
        self.generic = Shape(Cap(max_items, "too_many_items", "items"))
        examples = Cap(max_examples, "too_many_examples", "examples")
        labels = Cap(max_labels, "too_many_labels", "labels")
        self._shapes = {
            "/adapt": self._shape(
                {
                    "examples": examples,
                    "examples.*.labels": labels,
                    "labels": labels,
                    "label_descriptions": Cap(max_labels, "too_many_labels", "label descriptions"),
                    "remove_labels": labels,
                }
            ),
            "/predict": self._shape({"texts": Cap(max_texts, "too_many_texts", "texts")}),
            "/tenants/{id}/suggest": self._shape({"texts": Cap(max_pool, "too_many_texts", "texts", " for /suggest")}),
            "/tenants/{id}/unlabeled": self._shape(
                {"texts": Cap(max_examples, "too_many_texts", "texts", " for /unlabeled")}
            ),
            "/tenants/{id}/evaluate": self._shape({"examples": examples, "examples.*.labels": labels}),
            "/tenants/{id}/feedback": self._shape(
                {"corrections": Cap(max_texts, "too_many_corrections", "corrections")}
            ),
            "/admin/keys": self._shape({"tenants": Cap(MAX_KEY_TENANTS, "too_many_items", "tenants")}),
        }

    def _shape(self, caps: Mapping[str, Cap]) -> Shape:
        """A shape from dotted paths (`*`: every item of a list) to caps."""
        root = Shape(self.generic.cap, self.generic)
        for path, cap in caps.items():
            shape = root
            for part in path.split("."):
                if part == "*":
                    shape.items = shape.items or Shape(self.generic.cap, self.generic)
                    shape = shape.items
                else:
                    shape = shape.fields.setdefault(part, Shape(self.generic.cap, self.generic))
            shape.cap = cap
        return root

    def shape(self, path: str) -> Shape:
        """The shape of the body of a request to `path` (the route's path, without any `root_path`)."""
        shape = self._shapes.get(path)
        if shape is None and (action := _TENANT_ACTION.match(path)):
            shape = self._shapes.get(f"/tenants/{{id}}/{action.group(1)}")
        return shape or self.generic

    def parse(self, path: str, body: bytes) -> Any:
        """The JSON value of `body` sent to `path`; `ServiceError` (422) when it is not JSON or breaks a cap."""
        shape = self.shape(path)
        few = len(body) <= LOOP_BYTES or element_bound(body, FEW_ELEMENTS) <= FEW_ELEMENTS  # a small body: ~1 ms
        if few and not _may_repeat_unique_keys(body):
            return self.loads_checked(body, shape)
        return self.parse_stepwise(body, shape)

    def loads_checked(self, body: bytes, shape: Shape) -> Any:
        """`json.loads`, then every container checked against `shape`."""
        try:
            value = json.loads(body)
        except RecursionError:
            raise _too_deep(self.max_depth) from None
        except ValueError as exc:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
            raise _not_json(exc) from None
        if isinstance(value, dict | list):
            self._check(value, shape, 1, "")
        return value

    def _check(self, value: dict[str, Any] | list[Any], shape: Shape, depth: int, path: str) -> None:
        if depth > self.max_depth:
            raise _too_deep(self.max_depth)
        if len(value) > shape.cap.limit:
            raise shape.cap.error(path, len(value))
        if isinstance(value, dict):
            for key, item in value.items():
                if isinstance(item, dict | list):
                    self._check(item, shape.field(key), depth + 1, f"{path}.{key}" if path else key)
        else:
            items = shape.item()
            for i, item in enumerate(value):
                if isinstance(item, dict | list):
                    self._check(item, items, depth + 1, f"{path}[{i}]")

    def parse_stepwise(self, body: bytes, shape: Shape) -> Any:
        """The same value as `json.loads`, parsed one container item at a time (scalars by the C scanner); stops
        at the first container over its cap, at `max_depth` and at a repeated top-level `UNIQUE_KEYS` key."""
        try:
            text = body.decode(json.detect_encoding(body), "surrogatepass")
            return _Stepwise(text, self.max_depth).parse(shape)
        except ValueError as exc:  # caps and repeated keys raise `ServiceError`, which passes
            raise _not_json(exc) from None


class _Frame:
    """An open container: its shape, the key of the value being read (objects) and where it sits in its parent."""

    __slots__ = ("container", "is_object", "key", "place", "shape")

    def __init__(self, container: dict[str, Any] | list[Any], shape: Shape, place: str | int | None) -> None:
        self.container = container
        self.is_object = isinstance(container, dict)
        self.shape = shape
        self.place = place
        self.key = ""


class _Stepwise:
    def __init__(self, text: str, max_depth: int) -> None:
        self.text = text
        self.max_depth = max_depth
        self.stack: list[_Frame] = []

    def parse(self, shape: Shape) -> Any:
        text, stack = self.text, self.stack
        space = _WHITESPACE.match
        i = space(text, 0).end()
        while True:
            char = text[i : i + 1]
            if char == "{" or char == "[":
                if len(stack) >= self.max_depth:
                    raise _too_deep(self.max_depth)
                frame = _Frame({} if char == "{" else [], shape, self._place())
                i = space(text, i + 1).end()
                if text.startswith("}" if char == "{" else "]", i):
                    value: Any = frame.container
                    i += 1
                else:
                    stack.append(frame)
                    i, shape = self._member(frame, i)
                    continue
            else:
                try:
                    value, i = _scan_value(text, i)
                except StopIteration as stop:
                    raise json.JSONDecodeError("Expecting value", text, stop.value) from None
            while True:  # `value` is complete: store it in its container, then read what follows
                if not stack:
                    i = space(text, i).end()
                    if i != len(text):
                        raise json.JSONDecodeError("Extra data", text, i)
                    return value
                frame = stack[-1]
                container = frame.container
                if frame.is_object:
                    container[frame.key] = value  # type: ignore[call-overload]
                else:
                    container.append(value)  # type: ignore[union-attr]
                if len(container) > frame.shape.cap.limit:
                    raise frame.shape.cap.error(self._path(), None)
                if text[i : i + 1] in _SPACE:
                    i = space(text, i).end()
                char = text[i : i + 1]
                if char == ",":
                    i, shape = self._member(frame, space(text, i + 1).end())
                    break
                if char != ("}" if frame.is_object else "]"):
                    raise json.JSONDecodeError("Expecting ',' delimiter", text, i)
                i += 1
                value = stack.pop().container

    def _member(self, frame: _Frame, i: int) -> tuple[int, Shape]:
        """At the start of the next member of `frame` (its key, for an object): where its value starts, and the
        value's shape."""
        if frame.is_object:
            i = self._key(frame, i)
            return i, frame.shape.field(frame.key)
        return i, frame.shape.item()

    def _key(self, frame: _Frame, i: int) -> int:
        """Read `"key":` at `i` into `frame.key`; the index of the value after it."""
        text = self.text
        if not text.startswith('"', i):
            raise json.JSONDecodeError("Expecting property name enclosed in double quotes", text, i)
        key, i = scanstring(text, i + 1)
        if len(self.stack) == 1 and key in UNIQUE_KEYS and key in frame.container:
            raise _repeated(key)
        frame.key = key
        if text[i : i + 1] in _SPACE:
            i = _WHITESPACE.match(text, i).end()
        if not text.startswith(":", i):
            raise json.JSONDecodeError("Expecting ':' delimiter", text, i)
        return _WHITESPACE.match(text, i + 1).end()

    def _place(self) -> str | int | None:
        """Where the value about to be read sits in the innermost open container."""
        if not self.stack:
            return None
        frame = self.stack[-1]
        return frame.key if frame.is_object else len(frame.container)

    def _path(self) -> str:
        path = ""
        for frame in self.stack[1:]:
            place = frame.place
            path += f"[{place}]" if isinstance(place, int) else f".{place}" if path else str(place)
        return path


def element_bound(body: bytes, stop: int) -> int:
    """At least the number of JSON values in `body` (every value but the first of a container follows a comma),
    counted up to a little past `stop`."""
    return sum(_count(body, byte, stop) for byte in (b",", b"[", b"{")) + 1


def _may_repeat_unique_keys(body: bytes) -> bool:
    return any(_count(body, b'"%s"' % key.encode(), 1) > 1 for key in UNIQUE_KEYS)


def _count(body: bytes, needle: bytes, stop: int) -> int:
    """Occurrences of `needle` in `body` up to past `stop`, counted a window at a time (each a short GIL hold)."""
    count, overlap = 0, len(needle) - 1
    for start in range(0, len(body), COUNT_WINDOW):
        count += body.count(needle, start, start + COUNT_WINDOW + overlap)
        if count > stop:
            break
    return count


def _not_json(exc: Exception) -> ServiceError:
    if isinstance(exc, json.JSONDecodeError):
        return invalid("invalid_json", f"the body is not valid JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})")
    if isinstance(exc, UnicodeDecodeError):
        return invalid("invalid_json", "the body is not valid UTF-8 JSON")
    return invalid("invalid_json", f"the body is not valid JSON: {exc}")


def _too_deep(max_depth: int) -> ServiceError:
    return invalid("invalid_json", f"the body nests deeper than {max_depth} levels")


def _repeated(key: str) -> ServiceError:
    return invalid("invalid_json", f"the body names `{key}` more than once")


DEFAULT_CAPS = BodyCaps()
_large_bodies: RunVar[CapacityLimiter] = RunVar("fewshot_large_json_bodies")


def _limiter() -> CapacityLimiter:
    """The event loop's own limiter of threads parsing large bodies."""
    try:
        return _large_bodies.get()
    except LookupError:
        limiter = CapacityLimiter(LARGE_BODY_THREADS)
        _large_bodies.set(limiter)
        return limiter


def _outcome(caps: BodyCaps, path: str, body: bytes) -> tuple[Any, ServiceError | None]:
    try:
        return caps.parse(path, body), None
    except ServiceError as exc:
        return None, exc


async def read_json(scope: Scope, body: bytes) -> Any:
    """The JSON value of the request's `body` within the caps of its endpoint (`app.state.body_caps`), parsed once
    per request whoever asks first (the access gate or the route); raises `ServiceError` (422)."""
    state = scope.setdefault("state", {})
    parsed = state.get(_PARSED)
    if parsed is None or parsed[0] != body:  # the same bytes object when the gate replayed it: no comparison
        caps = getattr(scope["app"].state, "body_caps", DEFAULT_CAPS) if "app" in scope else DEFAULT_CAPS
        path, root = scope["path"], scope.get("root_path", "")
        path = path[len(root) :] if root and path.startswith(root) else path
        if len(body) <= LOOP_BYTES and element_bound(body, LOOP_ELEMENTS) <= LOOP_ELEMENTS:
            outcome = _outcome(caps, path, body)
        else:
            outcome = await to_thread.run_sync(_outcome, caps, path, body, limiter=_limiter())
        parsed = state[_PARSED] = (body, *outcome)
    _, value, error = parsed
    if error is not None:
        raise error
    return value
