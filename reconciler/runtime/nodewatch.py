"""A watch of the nodes marked for consolidation, so that a recommendation waiting for the
node operator is looked at again the moment one of its nodes goes, not at the next resync.

It watches only the nodes carrying the mark's label (``direct/mark.py``): a handful, never
the cluster's thousands. It lists them, then watches from the list's version (bookmarks
keep the version current; on 410 Gone it lists again); each node that is deleted (or loses
the label) is reported with the recommendation that marked it. After every list it asks
for every waiting recommendation to be looked at, so a deletion missed while the watch
was down costs nothing. Without the right to list and watch nodes it stops and says so:
the operator then looks again on a short period instead.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

from reconciler.adapters import kube
from reconciler.domain import errors

log = logging.getLogger(__name__)


class NodeWatch:
    """List and watch the nodes matching ``selector``; ``on_gone(node, owner)`` per node
    deleted or unlabelled (``owner``: the annotation ``owner_key`` it carried), ``on_list()``
    after each list."""

    def __init__(self, api: kube.Kube, selector: str, owner_key: str,
                 on_gone: Callable[[str, str], None], on_list: Callable[[], None], *,
                 watch_timeout: float = 300.0, backoff: float = 1.0,
                 backoff_max: float = 30.0) -> None:
        self.api, self.selector, self.owner_key = api, selector, owner_key
        self.on_gone, self.on_list = on_gone, on_list
        self.watch_timeout = watch_timeout
        self._backoff, self._backoff_max = backoff, backoff_max
        self.synced = threading.Event()
        self.forbidden = False
        self._owners: dict[str, str] = {}
        self._stop = threading.Event()
        self._resp: Any = None
        self._thread = threading.Thread(target=self._run, daemon=True, name="node-watch")

    @property
    def watching(self) -> bool:
        """Listed at least once and still running (not refused)."""
        return self.synced.is_set() and not self.forbidden and self._thread.is_alive()

    def start(self) -> NodeWatch:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        resp = self._resp
        if resp is not None:
            kube.close_stream(resp)

    def join(self, timeout: float | None = None) -> None:
        self._thread.join(timeout)

    def _opened(self, resp: Any) -> None:
        self._resp = resp
        if self._stop.is_set():
            kube.close_stream(resp)

    def _owner(self, obj: dict[str, Any]) -> str:
        return str(((obj.get("metadata") or {}).get("annotations") or {}).get(
            self.owner_key) or "")

    def _list(self) -> str:
        items, version = self.api.list_nodes(self.selector)
        self._owners = {str(n["metadata"]["name"]): self._owner(n) for n in items}
        self.synced.set()
        self._call(self.on_list)
        return version

    def _call(self, fn: Callable[..., None], *args: Any) -> None:
        try:
            fn(*args)
        except Exception:  # a bad handler must not end the watch
            log.exception("node watch: handling a change failed")

    def _run(self) -> None:
        version = ""
        delay = self._backoff
        while not self._stop.is_set():
            try:
                if not version:
                    version = self._list()
                for ev in self.api.watch_nodes(self.selector, version, self.watch_timeout,
                                               on_open=self._opened):
                    if self._stop.is_set():
                        return
                    typ = str(ev.get("type", ""))
                    obj = ev.get("object") or {}
                    if typ == "ERROR":
                        if obj.get("code") == 410 or obj.get("reason") in ("Expired", "Gone"):
                            raise errors.ExpiredError(f"watch nodes: {obj.get('message', '')}")
                        raise errors.TemporaryError(f"watch nodes failed: "
                                                    f"{obj.get('message', obj)}")
                    version = str((obj.get("metadata") or {}).get("resourceVersion")
                                  or version)
                    name = str((obj.get("metadata") or {}).get("name") or "")
                    if typ == "DELETED" and name:
                        owner = self._owner(obj) or self._owners.pop(name, "")
                        self._owners.pop(name, None)
                        self._call(self.on_gone, name, owner)
                    elif typ in ("ADDED", "MODIFIED") and name:
                        self._owners[name] = self._owner(obj)
                delay = self._backoff
            except errors.ExpiredError as e:
                log.info("node watch: %s; listing again", e)
                version = ""
            except kube.Forbidden as e:
                self.forbidden = True
                log.warning("cannot list and watch the marked nodes (%s): recommendations "
                            "waiting for the node operator are looked at periodically "
                            "instead (grant nodes list and watch)", e)
                return
            except errors.ReconcilerError as e:
                log.warning("node watch: %s; trying again in %.1fs", e, delay)
                self._stop.wait(delay)
                delay = min(delay * 2, self._backoff_max)
            except Exception:
                log.exception("node watch failed; trying again in %.1fs", delay)
                self._stop.wait(delay)
                delay = min(delay * 2, self._backoff_max)
            finally:
                self._resp = None
