"""Optional RBAC enforcement from the Roles and bindings stored in the server.

The product ships ClusterRoles for its service account; enforcing them here (instead of
letting every call through) catches a missing verb or resource before a real cluster does,
with the real Forbidden message: `User "system:serviceaccount:ns:sa" cannot patch resource
"deployments" in API group "apps" in the namespace "ns"`.
"""

from __future__ import annotations

from typing import Any

from tests.fakes.kubeapi import faults, store

JSON = dict[str, Any]
MASTERS = "system:masters"


def groups_of(user: str, admins: set[str]) -> set[str]:
    groups = {"system:authenticated"}
    if user in admins:
        groups.add(MASTERS)
    if user.startswith("system:serviceaccount:"):
        ns = user.split(":")[2]
        groups |= {"system:serviceaccounts", f"system:serviceaccounts:{ns}"}
    if user == "system:anonymous":
        groups = {"system:unauthenticated"}
    return groups


def _subject_matches(subject: JSON, user: str, groups: set[str], binding_ns: str) -> bool:
    kind = subject.get("kind")
    if kind == "ServiceAccount":
        ns = subject.get("namespace") or binding_ns
        return user == f"system:serviceaccount:{ns}:{subject.get('name')}"
    if kind == "User":
        return user == subject.get("name")
    if kind == "Group":
        return subject.get("name") in groups
    return False


def _rule_allows(rule: JSON, info: faults.RequestInfo) -> bool:
    if not rule.get("resources"):
        return False
    groups = rule.get("apiGroups") or []
    if "*" not in groups and info.group not in groups:
        return False
    verbs = rule.get("verbs") or []
    if "*" not in verbs and info.verb not in verbs:
        return False
    wanted = info.resource + (f"/{info.subresource}" if info.subresource else "")
    ok = False
    for res in rule.get("resources") or []:
        if res in (wanted, "*") or (
            info.subresource and res == f"*/{info.subresource}") or (
            not info.subresource and res == f"{info.resource}"):
            ok = True
            break
    if not ok:
        return False
    names = rule.get("resourceNames") or []
    return not names or (bool(info.name) and info.name in names)


class Authorizer:
    """Evaluates Role/ClusterRole rules bound to the caller; returns a denial message or None."""

    def __init__(self, st: store.Store, admins: set[str]) -> None:
        self.store = st
        self.admins = admins

    def _objects(self, plural: str, namespace: str | None) -> list[JSON]:
        rt = self.store.type_for("rbac.authorization.k8s.io", "v1", plural)
        return list(self.store.all_objects(rt, namespace))

    def _role_rules(self, ref: JSON, namespace: str) -> list[JSON]:
        kind, name = ref.get("kind"), ref.get("name")
        if kind == "ClusterRole":
            roles = [r for r in self._objects("clusterroles", None)
                     if r["metadata"]["name"] == name]
        else:
            roles = [r for r in self._objects("roles", namespace)
                     if r["metadata"]["name"] == name]
        return [rule for r in roles for rule in r.get("rules") or []]

    def allowed(self, user: str, info: faults.RequestInfo) -> bool:
        groups = groups_of(user, self.admins)
        if MASTERS in groups:
            return True
        rules: list[JSON] = []
        for b in self._objects("clusterrolebindings", None):
            if any(_subject_matches(s, user, groups, "") for s in b.get("subjects") or []):
                rules += self._role_rules(b.get("roleRef") or {}, "")
        if info.namespace:
            for b in self._objects("rolebindings", info.namespace):
                if any(_subject_matches(s, user, groups, info.namespace)
                       for s in b.get("subjects") or []):
                    rules += self._role_rules(b.get("roleRef") or {}, info.namespace)
        return any(_rule_allows(r, info) for r in rules)

    def __call__(self, user: str, info: faults.RequestInfo) -> str | None:
        if self.allowed(user, info):
            return None
        wanted = info.resource + (f"/{info.subresource}" if info.subresource else "")
        where = (f'in the namespace "{info.namespace}"' if info.namespace
                 else "at the cluster scope")
        return (f'User "{user}" cannot {info.verb} resource "{wanted}" in API group '
                f'"{info.group}" {where}')
