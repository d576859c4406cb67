"""The documentation (README.md, the landing page, and the pages under docs/) stays consistent.

Plain text checks, no TensorFlow: every relative link and anchor resolves, every config key
the docs name exists in the config schema, and every docs page is reachable from the README.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from conftest import ROOT

SCHEMA = yaml.safe_load((ROOT / "src" / "advfit" / "config.schema.yaml").read_text())
DOC_PAGES = sorted((ROOT / "docs").glob("*.md"))
DOCS = [ROOT / "README.md", *DOC_PAGES]

# Dotted names in backticks that start like a config key but are not one.
NOT_CONFIG_KEYS = {
    "model.fit",  # Keras' Model.fit (the training loop adversarial training replaces)
}


def _ids(paths):
    return [str(p.relative_to(ROOT)) for p in paths]


# ------------------------------------------------------------------ markdown helpers

def prose(text: str) -> str:
    """The text with fenced code blocks blanked (line numbers kept)."""
    out, fence = [], False
    for line in text.splitlines():
        if re.match(r"\s*(```|~~~)", line):
            fence = not fence
            out.append("")
        else:
            out.append("" if fence else line)
    return "\n".join(out)


def fenced_blocks(text: str, lang: str):
    """The contents of the fenced code blocks of one language."""
    return re.findall(rf"^```{lang}\n(.*?)^```", text, flags=re.M | re.S)


def slug(heading: str) -> str:
    """GitHub's anchor of a heading: markup dropped, lowercase, punctuation other than
    hyphens and underscores dropped, spaces to hyphens."""
    text = re.sub(r"\[([^\[\]]*)\]\([^)]*\)", r"\1", heading)  # a link: its text
    text = text.strip().lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    """Every heading's anchor in a markdown file, with GitHub's -1, -2 for repeats."""
    seen: dict[str, int] = {}
    out = set()
    for line in prose(path.read_text()).splitlines():
        m = re.match(r"#{1,6}\s+(.*?)\s*#*\s*$", line)
        if not m:
            continue
        base = slug(m.group(1))
        n = seen.get(base, 0)
        seen[base] = n + 1
        out.add(base if n == 0 else f"{base}-{n}")
    return out


def links(path: Path):
    """(target, line number) of every inline markdown link outside code."""
    text = prose(path.read_text())
    text = re.sub(r"`[^`\n]*`", lambda m: " " * len(m.group(0)), text)  # inline code
    for m in re.finditer(r"\[[^\[\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)", text):
        yield m.group(1), text.count("\n", 0, m.start()) + 1


def local_links(path: Path):
    for target, line in links(path):
        if re.match(r"[a-z][a-z0-9+.-]*:", target):  # http:, https:, mailto:
            continue
        yield target, line


# ------------------------------------------------------------------ 1. links and anchors

def test_the_docs_exist():
    assert DOC_PAGES, "docs/*.md is empty"
    assert (ROOT / "docs" / "attacks.md") in DOC_PAGES  # tests/test_config.py reads its table


@pytest.mark.parametrize("doc", DOCS, ids=_ids(DOCS))
def test_relative_links_and_anchors_resolve(doc):
    problems = []
    for target, line in local_links(doc):
        file_part, _, anchor = target.partition("#")
        dest = (doc.parent / file_part).resolve() if file_part else doc
        where = f"{doc.relative_to(ROOT)}:{line}: ({target})"
        if not dest.exists():
            problems.append(f"{where} points to a missing file")
            continue
        if anchor:
            if dest.suffix != ".md":
                problems.append(f"{where} has an anchor into a file that is not markdown")
            elif anchor not in anchors(dest):
                problems.append(f"{where}: no heading with the anchor #{anchor} in "
                                f"{dest.relative_to(ROOT)}")
    assert not problems, "\n".join(problems)


def test_the_link_checker_sees_links_and_anchors(tmp_path):
    """The checks above can fail: a broken file, a broken anchor and code are told apart."""
    page = tmp_path / "page.md"
    page.write_text("# A title, with: punctuation\n\n## Twice\n\n## Twice\n\n"
                    "[ok](#a-title-with-punctuation) [ok](#twice-1) [gone](other.md)\n"
                    "`[not a link](nowhere.md)` [web](https://example.org) "
                    "in [0, 1) then [x](page.md#missing)\n"
                    "```\n# not a heading\n[not a link](nowhere.md)\n```\n")
    assert anchors(page) == {"a-title-with-punctuation", "twice", "twice-1"}
    assert [t for t, _ in local_links(page)] == [
        "#a-title-with-punctuation", "#twice-1", "other.md", "page.md#missing"]


# ------------------------------------------------------------------ 2. config keys

class Resolver:
    """Walks the config schema key by key.

    A key is looked up in ``properties`` of the node and of every branch of it (``allOf``,
    ``anyOf``, ``oneOf``, ``if``/``then``/``else``, ``$ref`` followed), then in
    ``patternProperties`` and in ``additionalProperties`` when that is a schema (a map of
    names: regimes, attacks). A placeholder key (``<name>``) matches only those wildcards.
    A node that is an object declaring no properties of any kind (``model.params``) takes
    any key below it. Anything else is unknown.
    """

    OPEN = object()

    def __init__(self, schema: dict):
        self.schema = schema

    def deref(self, node):
        while isinstance(node, dict) and "$ref" in node:
            ref = node["$ref"]
            assert ref.startswith("#/"), ref
            target = self.schema
            for part in ref[2:].split("/"):
                target = target[part]
            node = target
        return node

    def branches(self, node):
        node = self.deref(node)
        if not isinstance(node, dict):
            return
        yield node
        for key in ("allOf", "anyOf", "oneOf"):
            for sub in node.get(key, []):
                yield from self.branches(sub)
        for key in ("if", "then", "else"):
            if key in node:
                yield from self.branches(node[key])

    def children(self, nodes, key: str):
        """The schemas of ``key`` under any of ``nodes``; OPEN; or [] (unknown)."""
        placeholder = bool(re.fullmatch(r"<[^<>]+>", key))
        found, declares, is_object = [], False, False
        for node in nodes:
            for b in self.branches(node):
                types = b.get("type", [])
                is_object |= "object" in (types if isinstance(types, list) else [types])
                props = b.get("properties", {})
                patterns = b.get("patternProperties", {})
                extra = b.get("additionalProperties")
                declares |= bool(props or patterns) or extra is not None
                if not placeholder and key in props:
                    found.append(props[key])
                    continue
                names = b.get("propertyNames", {}).get("pattern")
                if not placeholder and names and not re.search(names, key):
                    continue
                found += [s for p, s in patterns.items() if placeholder or re.search(p, key)]
                if isinstance(extra, dict):
                    found.append(extra)
                elif extra is True:
                    return self.OPEN
        if found:
            return found
        return self.OPEN if is_object and not declares else []

    def exists(self, path: list[str], start=None) -> bool:
        nodes = [start if start is not None else self.schema]
        for key in path:
            nodes = self.children(nodes, key)
            if nodes is self.OPEN:
                return True
            if not nodes:
                return False
        return True


RESOLVER = Resolver(SCHEMA)
TOP_KEYS = set(SCHEMA["properties"])
REGIME_KEYS = set(SCHEMA["$defs"]["regime"]["properties"])  # often named without regimes.<name>.

SEGMENT = r"(?:<[^<>\s]+>|[A-Za-z0-9_]+)"
DOTTED = re.compile(rf"[a-z_][a-z0-9_]*(?:\.{SEGMENT})+")
FILE_NAME = re.compile(r".*\.(json|csv|npz|npy|py|ya?ml|md|h5|png|svg|tsv|html|txt|gz|tar|lock)$")


def key_exists(dotted: str) -> bool:
    path = dotted.split(".")
    if path[0] in TOP_KEYS:
        return RESOLVER.exists(path)
    return RESOLVER.exists(["regimes", "<name>", *path])


def named_keys(text: str):
    """(dotted key, line) for every config key the prose names: a backtick span that is a
    dotted path from a top-level or regime key (alone, or followed by ': value'), and every
    key quoted in an error message (config key '...')."""
    body = prose(text)
    for m in re.finditer(r"`([^`]+)`", body):
        span = m.group(1)
        line = body.count("\n", 0, m.start()) + 1
        quoted = re.findall(r"config key\s+'([^']+)'", span)
        if quoted:
            for key in quoted:
                yield key, line
            continue
        head = DOTTED.match(span)
        if not head or head.end() != len(span) and not span[head.end():].startswith(": "):
            continue
        key = head.group(0)
        if FILE_NAME.match(key):  # best_snapshot.json is a file, not a key
            continue
        if key.split(".")[0] in TOP_KEYS | REGIME_KEYS and key not in NOT_CONFIG_KEYS:
            yield key, line


def yaml_keys(text: str):
    """Every key path of the YAML examples that are configs (top-level keys of the schema)."""
    def walk(value, path):
        if isinstance(value, dict):
            for k, v in value.items():
                yield path + [str(k)]
                yield from walk(v, path + [str(k)])

    for block in fenced_blocks(text, "yaml"):
        data = yaml.safe_load(block)
        if isinstance(data, dict) and set(data) <= TOP_KEYS:
            yield from walk(data, [])


@pytest.mark.parametrize("doc", DOCS, ids=_ids(DOCS))
def test_config_keys_named_in_the_docs_exist(doc):
    text = doc.read_text()
    stale = [f"{doc.relative_to(ROOT)}:{line}: `{key}`" for key, line in named_keys(text)
             if not key_exists(key)]
    stale += [f"{doc.relative_to(ROOT)}: YAML example key {'.'.join(path)}"
              for path in yaml_keys(text) if not RESOLVER.exists(path)]
    assert not stale, "keys the config schema does not have:\n" + "\n".join(stale)


def test_the_docs_name_config_keys_at_all():
    """Guards the extraction itself: if it found nothing, the test above would pass vacuously."""
    found = {key for doc in DOCS for key, _ in named_keys(doc.read_text())}
    assert {"best_snapshot.metric", "splits.use", "limits.max_image_passes"} <= found, found
    paths = {".".join(p) for doc in DOCS for p in yaml_keys(doc.read_text())}
    assert "regimes.pgd_at.lr_schedule.boundaries" in paths


@pytest.mark.parametrize("key", [
    "regimes.<name>.lr_schedule", "regimes.normal.lr_schedule.warmup_epochs",
    "best_snapshot.metric", "snapshot_attacks.attacks", "attacks.<name>.function",
    "attacks.fgsm.eps", "model.params.depht", "dataset.sha256.data_batch_1",
    "robustness_metrics.metrics.clever_u.radius", "adversarial_training.crafting_mode",
    "augmentation.crop.padding_mode", "snapshot_attacks.snapshots.every",
])
def test_known_keys_resolve(key):
    assert key_exists(key)


@pytest.mark.parametrize("key", [
    "regimes.<name>.lr_schedules", "best_snapshot.metrics", "snapshot_attacks.attack",
    "attacks.fgsm.epsilon", "attacks.<name>.functions", "statistics.confidence.level",
    "knn.memorize", "limits.max_epoch", "regimes.Bad-Name.epochs", "lr_schedule.kind",
    "robustness_metrics.metrics.clever.radius",
])
def test_bogus_keys_are_caught(key):
    assert not key_exists(key)


def test_stale_keys_in_prose_and_yaml_are_reported():
    text = ("Set `best_snapshot.metrics: val_accuracy`, see `knn.memorise` and\n"
            "`config key 'regimes.normal.lr_schedule.bondaries': nope`.\n\n"
            "```yaml\nregimes:\n  r:\n    lr_schedule: {type: cosine, final_factr: 0.1}\n```\n")
    named = [k for k, _ in named_keys(text)]
    assert named == ["best_snapshot.metrics", "knn.memorise",
                     "regimes.normal.lr_schedule.bondaries"]
    assert [k for k in named if not key_exists(k)] == [named[0], named[2]]
    assert [".".join(p) for p in yaml_keys(text) if not RESOLVER.exists(p)] == [
        "regimes.r.lr_schedule.final_factr"]


# ------------------------------------------------------------------ 3. reachability

def test_every_docs_page_is_linked_from_the_readme():
    readme = ROOT / "README.md"
    linked = {(readme.parent / target.partition("#")[0]).resolve()
              for target, _ in local_links(readme) if target.partition("#")[0]}
    missing = [str(p.relative_to(ROOT)) for p in DOC_PAGES if p.resolve() not in linked]
    assert not missing, f"docs pages the README does not link: {missing}"
