"""Which validation rounds have already asked a question: the rule files of benchmarks/validation/, searchable.

    python benchmarks/validation_rounds.py edge_band            # every round whose rule file mentions edge_band
    python benchmarks/validation_rounds.py fusion_group_cap cap  # files that mention every term given
    python benchmarks/validation_rounds.py --list               # one line per rule file, oldest first

Before a new round, search here for the config keys it would change: more than a hundred rounds have been run, and
the README and docs/*_ROUNDS.md describe them over thousands of lines. For each matching rule file it prints its
variants (the overrides each one applies), the outcome appended to the file after its runs (``# Outcome ...``; the
older files have none), and the lines of README.md and docs/*.md that name the file, where the round's numbers are.

Terms match the file's name and its whole text, comments included, case-insensitively. Files are listed in the order
git first saw them (by name outside a git checkout). It reads files; it runs nothing and chooses nothing.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import textwrap
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RULES = ROOT / "benchmarks" / "validation"


def default_docs() -> list[Path]:
    """The files searched for a rule file's name: README.md, then docs/*.md (the round histories live there)."""
    return [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


@dataclass
class Round:
    path: Path
    text: str
    variants: dict = field(default_factory=dict)
    outcome: str = ""
    doc_lines: dict = field(default_factory=dict)  # {shown file name: [1-based lines naming the rule file]}

    @property
    def name(self) -> str:
        return self.path.name


def outcome_of(text: str) -> str:
    """The ``# Outcome ...`` comment block appended to a rule file after its runs ('' when it has none): from the
    first comment line that starts with "Outcome" to the end of that run of comment lines, joined into one line."""
    lines = text.splitlines()
    for i, line in enumerate(lines):
        if line.lstrip("# ").lower().startswith("outcome"):
            block = []
            for following in lines[i:]:
                if not following.startswith("#"):
                    break
                block.append(following.lstrip("#").strip())
            return " ".join(block)
    return ""


def load_round(path: Path, docs: dict[str, list[str]]) -> Round:
    import yaml

    text = path.read_text()
    parsed = yaml.safe_load(text) or {}
    if not isinstance(parsed, dict):
        raise ValueError(f"{path}: a rule file is a mapping of variant names to overrides, got {type(parsed).__name__}")
    found = {name: [n for n, line in enumerate(lines, 1) if path.name in line] for name, lines in docs.items()}
    return Round(path, text, parsed, outcome_of(text), {name: ns for name, ns in found.items() if ns})


def first_seen(paths: list[Path]) -> dict[Path, int]:
    """Unix time of the commit that added each file (git), or {} outside a git checkout."""
    try:
        out = subprocess.run(["git", "-C", str(ROOT), "log", "--diff-filter=A", "--format=%ct", "--name-only",
                              "--", str(RULES.relative_to(ROOT))], capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return {}
    seen, stamp = {}, None
    for line in out.splitlines():
        line = line.strip()
        if line.isdigit():
            stamp = int(line)
        elif line and stamp is not None:
            seen[(ROOT / line).resolve()] = stamp  # git log runs newest first: the last write is the oldest add
    return {p: seen[p.resolve()] for p in paths if p.resolve() in seen}


def find_rounds(terms: list[str], rules: Path = RULES, docs=None) -> list[Round]:
    """The rule files under ``rules`` whose name or text contains every term (case-insensitive), oldest first.
    ``docs``: the files searched for their names (a path or a list of paths; default :func:`default_docs`), shown
    relative to the folder of the first."""
    paths_docs = default_docs() if docs is None else [docs] if isinstance(docs, Path) else list(docs)
    base = paths_docs[0].parent if paths_docs else ROOT
    texts = {os.path.relpath(d, base): d.read_text().splitlines() for d in paths_docs if d.is_file()}
    paths = sorted(rules.glob("*.yaml"))
    order = first_seen(paths)
    paths.sort(key=lambda p: (order.get(p, float("inf")), p.name))
    rounds = [load_round(p, texts) for p in paths]
    lowered = [t.lower() for t in terms]
    return [r for r in rounds if all(t in f"{r.name}\n{r.text}".lower() for t in lowered)]


def where(r: Round, most: int = 6) -> str:
    """'README.md lines 2, 4; docs/X.md lines 7' (at most ``most`` lines per file), or 'not in the docs'."""
    return "; ".join(f"{name} lines {', '.join(map(str, ns[:most]))}{', ...' if len(ns) > most else ''}"
                     for name, ns in r.doc_lines.items()) or "not in the docs"


def describe(r: Round, width: int = 120) -> str:
    lines = [f"{r.name}  ({where(r)})"]
    for name, overrides in r.variants.items():
        shown = " ".join(map(str, overrides)) if isinstance(overrides, list) else str(overrides)
        lines.append(f"  {name}: {shown or '(the default)'}"[:width])
    if r.outcome:
        lines.extend(textwrap.wrap(r.outcome, width, initial_indent="  outcome: ", subsequent_indent="    "))
    else:
        lines.append("  outcome: not in the file (see the lines above)")
    return "\n".join(lines)


def main(argv=None) -> list[Round]:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("terms", nargs="*", help="words every listed rule file must contain (a config key, a round name)")
    ap.add_argument("--list", action="store_true", help="one line per rule file: its name and where it is described")
    args = ap.parse_args(argv)
    if not args.terms and not args.list:
        ap.error("give a term to search for (e.g. a config key), or --list")
    rounds = find_rounds(args.terms)
    if args.list:
        for r in rounds:
            print(f"{r.name:40s} {len(r.variants)} variants  {where(r, 3)}"
                  f"{'  outcome in file' if r.outcome else ''}")
    else:
        print("\n\n".join(describe(r) for r in rounds) if rounds else f"no rule file mentions {' and '.join(args.terms)}")
    print(f"\n{len(rounds)} rule file(s) of {len(list(RULES.glob('*.yaml')))} in {os.path.relpath(RULES)}",
          file=sys.stderr)
    return rounds


if __name__ == "__main__":
    main()
