"""Every relative link of the Markdown pages (``*.md`` in the repository root
and in ``docs/``) points at an existing file or folder, and a ``#anchor`` into
a Markdown page at one of its headings (GitHub's heading ids). Pages move and
headings get renamed; this catches the links left behind."""
import re
from pathlib import Path
from typing import Dict, List

REPO = Path(__file__).resolve().parents[2]

FENCE = re.compile(r'^(```|~~~)')
HEADING = re.compile(r'^#{1,6}\s+(.*?)\s*#*\s*$')
# [text](target) and ![alt](target); the target ends at a space or ')'
LINK = re.compile(r'!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+"[^"]*")?\s*\)')
INLINE_CODE = re.compile(r'`[^`]*`')
SCHEME = re.compile(r'^[a-zA-Z][a-zA-Z0-9+.-]*:')


def _prose_lines(text: str) -> List[str]:
    """The lines of a page outside fenced code blocks."""
    lines, in_fence = [], False
    for line in text.splitlines():
        if FENCE.match(line.strip()):
            in_fence = not in_fence
            continue
        if not in_fence:
            lines.append(line)
    return lines


def heading_ids(text: str) -> List[str]:
    """GitHub's ids of a page's headings: lower case, punctuation other
    than '-' and '_' dropped, spaces to '-', '-1', '-2', ... on repeats."""
    ids: List[str] = []
    seen: Dict[str, int] = {}
    for line in _prose_lines(text):
        match = HEADING.match(line)
        if not match:
            continue
        slug = re.sub(r'[^\w\- ]', '', match.group(1).strip().lower())
        slug = slug.replace(' ', '-')
        count = seen.get(slug, 0)
        seen[slug] = count + 1
        ids.append(slug if count == 0 else f'{slug}-{count}')
    return ids


def broken_links(page: Path) -> List[str]:
    """``'<page>: <target> (<why>)'`` for each relative link of ``page``
    that does not resolve."""
    problems = []
    for line in _prose_lines(page.read_text(encoding='utf-8')):
        for target in LINK.findall(INLINE_CODE.sub('', line)):
            if SCHEME.match(target):
                continue  # http:, https:, mailto:
            path, _, anchor = target.partition('#')
            dest = page if not path else page.parent / path
            if not dest.exists():
                problems.append(f'{page.name}: {target} (no such file)')
            elif anchor and dest.suffix == '.md' and anchor not in \
                    heading_ids(dest.read_text(encoding='utf-8')):
                problems.append(f'{page.name}: {target} (no such heading)')
    return problems


def doc_pages() -> List[Path]:
    return sorted(REPO.glob('*.md')) + sorted(REPO.glob('docs/*.md'))


def test_every_relative_link_resolves():
    pages = doc_pages()
    assert REPO / 'README.md' in pages and len(pages) > 5
    problems = [p for page in pages for p in broken_links(page)]
    assert problems == []


def test_broken_links_are_found(tmp_path):
    """The checker itself: a missing file, a missing heading and a link in
    code are told apart from good links."""
    (tmp_path / 'docs').mkdir()
    (tmp_path / 'docs' / 'b.md').write_text(
        '# Page B\n\n## 6. Error messages\n\n## COCO → VOC\n\n'
        '## Sampling (test time)\n\n## Sampling (test time)\n')
    (tmp_path / 'a.md').write_text(
        '# A\n\n'
        'Good: [b](docs/b.md), [e](docs/b.md#6-error-messages), '
        '[v](docs/b.md#coco--voc), [s](docs/b.md#sampling-test-time-1), '
        '[self](#a), [dir](docs/), [web](https://example.org/x.md), '
        '![img](docs/b.md).\n'
        'Bad: [m](docs/missing.md), [h](docs/b.md#no-such-heading), '
        '[s2](docs/b.md#sampling-test-time-2).\n'
        'In code: `[c](nowhere.md)`\n\n'
        '```\n[c](nowhere-either.md)\n```\n')
    assert broken_links(tmp_path / 'a.md') == [
        'a.md: docs/missing.md (no such file)',
        'a.md: docs/b.md#no-such-heading (no such heading)',
        'a.md: docs/b.md#sampling-test-time-2 (no such heading)',
    ]
