"""Download the challenge's FineWeb export from the Hugging Face Hub, laid out as the challenge does.

The published export (DESIGN section 5) lives in a dataset repo under a root folder::

    <root>/manifest.json
    <root>/datasets/fineweb10B_sp1024/fineweb_val_000000.bin ...   (val shards, always all of them)
    <root>/datasets/fineweb10B_sp1024/fineweb_train_000000.bin ... (a prefix of the train shards)
    <root>/tokenizers/fineweb_1024_bpe.model (+ .vocab)
    <root>/docs_selected.jsonl, <root>/docs_selected.source_manifest.json   (only with_docs)

and lands locally under ``out_dir`` at the same paths without the root, which is where the
challenge's own downloader puts them (``data/datasets/...``, ``data/tokenizers/...``), so
``jepagolf train --data <out_dir>/datasets/fineweb10B_sp1024`` finds the tokenizer by itself.

The download is driven by the manifest the challenge's exporter writes: the variant's entry
in ``datasets`` gives the shard counts (``stats.files_train`` / ``files_val``) and the token
counts, and names its tokenizer, whose entry in ``tokenizers`` gives the files to fetch.

Every file is validated before it is accepted, and a file already present is skipped only if
it passes the same validation, so an interrupted or corrupted download is simply rerun:

- shards: header magic/version, file size = 1024 + 2n, and n equal to what the manifest's
  token counts imply for that shard (every shard but a split's last is ``shard_size`` long);
- the tokenizer loads, has the variant's vocab size and BOS id 1; the .vocab has one line a piece;
- JSON files parse; the docs JSONL has the sidecar's document count and a complete last line;
- freshly fetched files also match the Hub's size and content hash (the ETag: sha256 for LFS
  files, git blob sha1 for small ones) — huggingface_hub itself only checks the size.

Files are fetched with ``hf_hub_download`` into a staging folder inside ``out_dir`` (same
filesystem), checked there, and renamed into place, so a path in the final layout only ever
holds a complete, validated file.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import shutil
import stat
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from jepagolf.data.errors import DataError, DownloadError
from jepagolf.data.shards import ShardError, atomic_write, read_header
from jepagolf.jsonfile import read_regular
from jepagolf.outputs import read_marker

DEFAULT_REPO_ID = "willdepueoai/parameter-golf"
DEFAULT_ROOT = "datasets"
DEFAULT_TRAIN_SHARDS = 80  # the challenge downloader's default: 8B training tokens
MANIFEST_NAME = "manifest.json"
DOCS_NAME = "docs_selected.jsonl"
DOCS_SIDECAR_NAME = "docs_selected.source_manifest.json"
# Staging folder inside the output folder; removed after a run that fetched everything.
STAGING_DIR = ".jepagolf-download"
# The files fetched so far (relative paths): a rerun replaces a damaged file only when it is listed.
REGISTRY_NAME = ".jepagolf-fineweb.json"
# One retry per file: a transfer that arrived damaged (hash mismatch, truncated) usually
# comes right the second time; a file that is wrong on the Hub itself fails both times.
FETCH_ATTEMPTS = 2

_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_GIT_SHA1 = re.compile(r"^[0-9a-f]{40}$")
_VARIANT = re.compile(r"^sp(\d+)$")
_HASH_BLOCK = 1 << 22


@dataclass(frozen=True)
class RemoteFile:
    """One file of the export: its path below the root (= below the local folder) and how to check it."""

    relpath: str
    kind: str  # "manifest" | "tokenizer" | "vocab" | "shard" | "docs" | "docs_sidecar"
    expected_tokens: int | None = None  # shards only, when the manifest implies it


@dataclass(frozen=True)
class FinewebDataset:
    """Where a fetched variant lives locally."""

    root_dir: Path
    data_dir: Path
    tokenizer: Path
    train_shards: int
    val_shards: int
    downloaded: int
    skipped: int


# The Hub's manifest, vocab and docs sidecar are tens of kB; a local file of that name over this is
# refused unread (as is a FIFO or device: jsonfile.read_regular).
MAX_SIDE_FILE_BYTES = 16 << 20


class InvalidFileError(DataError):
    """A local or freshly downloaded file failed validation (the message says why)."""


# ----------------------------------------------------------------------------- the plan


def variant_vocab(variant: str) -> int:
    """Vocab size of a SentencePiece variant name such as ``sp1024``."""
    m = _VARIANT.match(variant)
    if not m:
        raise DataError(
            f"variant {variant!r} is not supported: use a SentencePiece variant named sp<VOCAB>, e.g. sp1024 "
            "(byte-level variants have no SentencePiece tokenizer to validate)"
        )
    return int(m.group(1))


def dataset_name(variant: str) -> str:
    return f"fineweb10B_{variant}"


def _safe_relpath(value: object, what: str) -> str:
    # Paths come from a downloaded manifest: never let one point outside the output folder.
    if not isinstance(value, str) or not value:
        raise DataError(f"manifest: {what} must be a non-empty relative path, got {value!r}")
    p = PurePosixPath(value)
    if p.is_absolute() or ".." in p.parts or "\\" in value:
        raise DataError(f"manifest: {what} {value!r} is not a safe relative path")
    return p.as_posix()


def _find_entry(manifest: dict[str, Any], key: str, name: str) -> dict[str, Any] | None:
    entries = manifest.get(key)
    if not isinstance(entries, list):
        return None
    return next((e for e in entries if isinstance(e, dict) and e.get("name") == name), None)


def _positive_int(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else None


def expected_shard_tokens(files: int, tokens: object, shard_size: object) -> list[int | None]:
    """Token count of each shard of a split, when the manifest's counts pin it down.

    The exporter fills shards to ``shard_size`` tokens and starts a new one, so every shard
    but the split's last is full. If the counts are missing or inconsistent with ``files``,
    nothing is implied (the header and file size are still checked).
    """
    tokens, shard_size = _positive_int(tokens), _positive_int(shard_size)
    if tokens is None or shard_size is None or files <= 0 or math.ceil(tokens / shard_size) != files:
        return [None] * max(files, 0)
    return [shard_size] * (files - 1) + [tokens - (files - 1) * shard_size]


def plan_files(
    manifest: dict[str, Any], variant: str, train_shards: int, with_docs: bool
) -> tuple[list[RemoteFile], int]:
    """The files to fetch for ``variant`` (tokenizer, val shards, train prefix, docs) and the vocab size."""
    name = dataset_name(variant)
    vocab = variant_vocab(variant)
    entry = _find_entry(manifest, "datasets", name)
    if entry is None:
        published = sorted(
            str(e.get("name")) for e in manifest.get("datasets", []) if isinstance(e, dict) and "name" in e
        )
        raise DataError(
            f"manifest: dataset {name} (variant {variant}) is not published here; "
            f"published: {', '.join(published) or 'none'}"
        )
    stats = entry.get("stats") if isinstance(entry.get("stats"), dict) else {}
    files_train, files_val = _positive_int(stats.get("files_train")), _positive_int(stats.get("files_val"))
    if files_train is None or files_val is None:
        raise DataError(f"manifest: dataset {name} has no usable shard counts (stats.files_train/files_val): {stats}")
    if train_shards < 0:
        raise DataError(f"train_shards must be >= 0, got {train_shards}")
    if train_shards > files_train:
        raise DataError(f"{variant} has {files_train} train shards published, {train_shards} were requested")
    tok_name = entry.get("tokenizer_name")
    tok = _find_entry(manifest, "tokenizers", str(tok_name))
    if tok is None:
        raise DataError(f"manifest: tokenizer {tok_name!r} of dataset {name} is not listed under 'tokenizers'")
    for source, value in (("dataset", entry.get("vocab_size")), ("tokenizer", tok.get("vocab_size"))):
        if value is not None and value != vocab:
            raise DataError(f"manifest: the {source} entry of {name} says vocab_size {value}, variant {variant} "
                            f"means {vocab}")
    model_path = _safe_relpath(tok.get("model_path"), f"tokenizer {tok_name} model_path")
    if not model_path.endswith(".model"):
        raise DataError(f"manifest: tokenizer {tok_name} model_path {model_path!r} is not a SentencePiece .model")

    plan = [RemoteFile(model_path, "tokenizer")]
    if tok.get("vocab_path"):
        plan.append(RemoteFile(_safe_relpath(tok["vocab_path"], f"tokenizer {tok_name} vocab_path"), "vocab"))
    shard_size = manifest.get("shard_size")
    prefix = f"datasets/{name}"
    for split, count, wanted in (("val", files_val, files_val), ("train", files_train, train_shards)):
        expected = expected_shard_tokens(count, stats.get(f"tokens_{split}"), shard_size)
        plan += [
            RemoteFile(f"{prefix}/fineweb_{split}_{i:06d}.bin", "shard", expected[i]) for i in range(wanted)
        ]
    if with_docs:
        # The sidecar first: its document count validates the docs file.
        plan += [RemoteFile(DOCS_SIDECAR_NAME, "docs_sidecar"), RemoteFile(DOCS_NAME, "docs")]
    return plan, vocab


# ----------------------------------------------------------------------------- validation


def validate_file(path: Path, item: RemoteFile, vocab: int, docs_count: int | None = None) -> None:
    """Raise InvalidFileError with the reason if ``path`` is not an acceptable copy of ``item``."""
    try:
        if item.kind == "shard":
            n = read_header(path)
            if item.expected_tokens is not None and n != item.expected_tokens:
                raise InvalidFileError(
                    f"{path}: holds {n} tokens, the manifest's counts imply {item.expected_tokens}"
                )
        elif item.kind == "tokenizer":
            from jepagolf.data.tokenizer import load_tokenizer

            load_tokenizer(path, expected_vocab=vocab)
        elif item.kind == "vocab":
            lines = read_regular(path, MAX_SIDE_FILE_BYTES, "a vocab file").decode("utf-8").splitlines()
            if len(lines) != vocab or not all("\t" in line for line in lines):
                raise InvalidFileError(f"{path}: expected {vocab} 'piece<TAB>score' lines, found {len(lines)}")
        elif item.kind in ("manifest", "docs_sidecar"):
            data = json.loads(read_regular(path, MAX_SIDE_FILE_BYTES, f"a {item.kind.replace('_', ' ')}"))
            if not isinstance(data, dict) or (item.kind == "manifest" and not isinstance(data.get("datasets"), list)):
                raise InvalidFileError(f"{path}: not a {item.kind.replace('_', ' ')} (JSON object expected)")
        elif item.kind == "docs":
            _validate_docs(path, docs_count)
        else:
            raise AssertionError(f"unknown file kind {item.kind}")
    except InvalidFileError:
        raise
    except FileNotFoundError as e:
        raise InvalidFileError(f"{path}: missing") from e
    except RecursionError:
        raise InvalidFileError(f"{path}: JSON nested too deeply") from None
    except (ShardError, ValueError, OSError) as e:
        # ShardError/ValueError carry the file name and the reason already (bad header,
        # truncation, unloadable tokenizer, wrong vocab, bad JSON, bad UTF-8).
        raise InvalidFileError(str(e) if str(path) in str(e) else f"{path}: {e}") from e


def _validate_docs(path: Path, docs_count: int | None) -> None:
    # A docs file is tens of GB: count lines in blocks rather than parsing each one.
    size = path.stat().st_size
    if not stat.S_ISREG(path.stat().st_mode):
        raise InvalidFileError(f"{path}: not a regular file (a FIFO, socket or device); refused without reading it")
    if size == 0:
        raise InvalidFileError(f"{path}: empty")
    lines = 0
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(_HASH_BLOCK), b""):
            lines += block.count(b"\n")
        f.seek(max(0, size - (1 << 20)))
        tail = f.read()
    if not tail.endswith(b"\n"):
        raise InvalidFileError(f"{path}: the last line is incomplete (truncated download)")
    last = tail[:-1].rsplit(b"\n", 1)[-1]
    try:
        doc = json.loads(last)
    except ValueError as e:
        raise InvalidFileError(f"{path}: the last line is not JSON ({e})") from e
    if not isinstance(doc, dict) or not isinstance(doc.get("text"), str):
        raise InvalidFileError(f"{path}: the last line has no 'text' string")
    if docs_count is not None and lines != docs_count:
        raise InvalidFileError(f"{path}: {lines} documents, the sidecar lists {docs_count}")


def _sidecar_docs_count(root_dir: Path) -> int | None:
    try:
        count = json.loads(read_regular(root_dir / DOCS_SIDECAR_NAME, MAX_SIDE_FILE_BYTES)).get("num_docs")
    except (OSError, ValueError, AttributeError):
        return None
    return _positive_int(count)


def file_digest(path: Path, algorithm: str) -> str:
    """sha256 of the bytes, or ("git-sha1") the git blob id the Hub uses as ETag for non-LFS files."""
    if algorithm == "sha256":
        h = hashlib.sha256()
    else:
        h = hashlib.sha1(usedforsecurity=False)
        h.update(f"blob {path.stat().st_size}\0".encode())
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(_HASH_BLOCK), b""):
            h.update(block)
    return h.hexdigest()


def verify_transfer(path: Path, size: int | None, etag: str | None) -> bool:
    """Check a downloaded file against the Hub's size and ETag (content hash), when they are known.

    Returns whether the content hash was checked (the ETag was a sha256 or git blob id).
    """
    actual = path.stat().st_size
    if size is not None and actual != size:
        raise InvalidFileError(f"{path}: received {actual} bytes, the Hub lists {size}")
    etag = (etag or "").strip('"').lower()
    algorithm = "sha256" if _SHA256.match(etag) else "git-sha1" if _GIT_SHA1.match(etag) else None
    if algorithm is not None and (got := file_digest(path, algorithm)) != etag:
        raise InvalidFileError(f"{path}: content hash {got} does not match the Hub's {etag} (damaged transfer)")
    return algorithm is not None


# ----------------------------------------------------------------------------- fetching


def _strip_path(error: BaseException, path: Path | None) -> str:
    # Validation messages start with the file's path; for a staged download that is an
    # internal temporary path, and the caller's message already names the remote file.
    msg = str(error)
    return msg if path is None else msg.replace(f"{path}: ", "").replace(str(path), path.name)


def _transfer_errors() -> tuple[type[BaseException], ...]:
    """Exceptions that mean "this transfer failed" for the installed huggingface_hub.

    Its HTTP errors are OSErrors; network errors that escape its retries come from its HTTP
    client (requests' are OSErrors, httpx's and httpx2's derive from their HTTPError).
    """
    from huggingface_hub.errors import EntryNotFoundError, HfHubHTTPError

    errors: list[type[BaseException]] = [OSError, HfHubHTTPError, EntryNotFoundError]
    for client in ("httpx2", "httpx"):
        module = sys.modules.get(client)
        if module is not None and isinstance(getattr(module, "HTTPError", None), type):
            errors.append(module.HTTPError)
    return tuple(errors)


def _silent_tqdm() -> type:
    from tqdm.auto import tqdm

    class SilentTqdm(tqdm):  # type: ignore[misc,valid-type]
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            kwargs["disable"] = True
            super().__init__(*args, **kwargs)

    return SilentTqdm


class _Fetcher:
    """Fetches single files of one repo into ``root_dir`` through a staging folder."""

    def __init__(
        self,
        root_dir: Path,
        repo_id: str,
        root: str,
        revision: str | None,
        endpoint: str | None,
        say: Callable[[str], None],
        bars: bool,
    ) -> None:
        self.root_dir, self.repo_id, self.revision, self.endpoint, self.say = (
            root_dir, repo_id, revision, endpoint, say
        )
        self.root = root.strip("/")
        self.staging = root_dir / STAGING_DIR
        # huggingface_hub draws a byte-level bar per file on a terminal; in logs our lines suffice.
        self.tqdm_class = None if bars else _silent_tqdm()
        self.downloaded = 0
        self.skipped = 0
        # The files this command itself fetched into root_dir: the only ones it may replace.
        self.registry = root_dir / REGISTRY_NAME
        marker = read_marker(self.registry)
        self.own: set[str] = {str(p) for p in marker.get("files", [])} if marker else set()

    def _replaceable(self, final: Path, relpath: str, problem: str) -> None:
        """Refuse to delete ``final`` unless this command fetched it (it is in the registry)."""
        if relpath not in self.own:
            raise DataError(f"{final} is in the way: {problem}, and it was not downloaded by jepagolf data fineweb, "
                            "which never deletes files it did not create; move it away or choose another --dir")

    def _register(self, relpath: str) -> None:
        self.own.add(relpath)
        text = json.dumps({"files": sorted(self.own)}, indent=1) + "\n"
        atomic_write(self.registry, lambda f: f.write(text.encode("utf-8")))

    def remote_path(self, relpath: str) -> str:
        return f"{self.root}/{relpath}" if self.root else relpath

    def ensure(self, item: RemoteFile, vocab: int, label: str) -> Path:
        """Make ``root_dir/item.relpath`` a valid copy: keep it if it validates, else (re)fetch it."""
        final = self.root_dir / item.relpath
        docs_count = _sidecar_docs_count(self.root_dir) if item.kind == "docs" else None
        if final.exists():
            try:
                validate_file(final, item, vocab, docs_count)
            except InvalidFileError as e:
                self._replaceable(final, item.relpath, f"not a valid {item.kind.replace('_', ' ')} ({e})")
                self.say(f"{label} {item.relpath}: present but invalid ({e}); fetching it again")
                final.unlink()
            else:
                self.skipped += 1
                self.say(f"{label} {item.relpath}: present and valid, skipped")
                return final
        self._fetch(item, final, vocab, docs_count, label)
        self.downloaded += 1
        return final

    def _fetch(self, item: RemoteFile, final: Path, vocab: int, docs_count: int | None, label: str) -> None:
        from huggingface_hub import get_hf_file_metadata, hf_hub_download, hf_hub_url
        from huggingface_hub.errors import RemoteEntryNotFoundError, RepositoryNotFoundError, RevisionNotFoundError

        remote = self.remote_path(item.relpath)
        where = f"{remote} in dataset repo {self.repo_id}" + (f" at {self.revision}" if self.revision else "")
        last_error = ""
        for attempt in range(1, FETCH_ATTEMPTS + 1):
            staged: Path | None = None
            t0 = time.perf_counter()
            try:
                url = hf_hub_url(self.repo_id, remote, repo_type="dataset", revision=self.revision,
                                 endpoint=self.endpoint)
                meta = get_hf_file_metadata(url, endpoint=self.endpoint)
                size = f" ({meta.size / 1e6:.1f} MB)" if meta.size is not None else ""
                self.say(f"{label} {item.relpath}: downloading{size}")
                # Pin the commit the metadata came from, so size and hash describe the bytes we get.
                staged = Path(hf_hub_download(
                    self.repo_id, remote, repo_type="dataset", revision=meta.commit_hash or self.revision,
                    endpoint=self.endpoint, local_dir=self.staging, tqdm_class=self.tqdm_class,
                ))
                hash_checked = verify_transfer(staged, meta.size, meta.etag)
                try:
                    validate_file(staged, item, vocab, docs_count)
                except InvalidFileError as e:
                    if not hash_checked:
                        raise
                    # The bytes are exactly the Hub's: fetching them again cannot help.
                    staged.unlink(missing_ok=True)
                    raise DownloadError(
                        f"{where}: the Hub's copy itself is invalid (it matches the Hub's content hash): "
                        f"{_strip_path(e, staged)}; nothing was kept. Try another --revision or report it "
                        "to the dataset's maintainers"
                    ) from e
            except (RemoteEntryNotFoundError, RepositoryNotFoundError, RevisionNotFoundError) as e:
                raise DownloadError(f"{where}: not found ({type(e).__name__}); check --repo-id, --root and "
                                    "--variant") from e
            except InvalidFileError as e:
                last_error = _strip_path(e, staged)
            except _transfer_errors() as e:
                last_error = f"{type(e).__name__}: {' '.join(str(e).split())}"
            else:
                final.parent.mkdir(parents=True, exist_ok=True)
                os.replace(staged, final)
                self._register(final.relative_to(self.root_dir).as_posix())
                dt = time.perf_counter() - t0
                mb = final.stat().st_size / 1e6
                self.say(f"{label} {item.relpath}: ok, {mb:.1f} MB in {dt:.1f}s ({mb / max(dt, 1e-9):.1f} MB/s), valid")
                return
            if staged is not None:
                staged.unlink(missing_ok=True)
            if attempt < FETCH_ATTEMPTS:
                self.say(f"{label} {item.relpath}: attempt {attempt} failed ({last_error}); retrying")
        raise DownloadError(
            f"{where}: failed after {FETCH_ATTEMPTS} attempts: {last_error}. Nothing invalid was kept; "
            "files already fetched stay, so rerunning the command resumes"
        )

    def load_manifest(self, name: str) -> dict[str, Any]:
        """The local manifest if it is valid and lists ``name``; otherwise a freshly fetched one."""
        item = RemoteFile(MANIFEST_NAME, "manifest")
        path = self.root_dir / MANIFEST_NAME
        if path.exists():
            try:
                validate_file(path, item, 0)
                manifest = json.loads(read_regular(path, MAX_SIDE_FILE_BYTES, "a manifest"))
            except InvalidFileError as e:
                self._replaceable(path, MANIFEST_NAME, f"not a valid manifest ({e})")
                self.say(f"manifest: local copy is invalid ({e}); fetching it again")
            else:
                if _find_entry(manifest, "datasets", name) is not None:
                    self.say(f"manifest: using the local {path}")
                    self.skipped += 1
                    return manifest
                self._replaceable(path, MANIFEST_NAME, f"a manifest that does not list {name}")
                self.say(f"manifest: local copy does not list {name}; fetching the current one")
            path.unlink()
        self._fetch(item, path, 0, None, "manifest:")
        self.downloaded += 1
        return json.loads(read_regular(path, MAX_SIDE_FILE_BYTES, "a manifest"))

    def cleanup(self) -> None:
        shutil.rmtree(self.staging, ignore_errors=True)


def fetch_fineweb(
    out_dir: str | os.PathLike[str],
    *,
    variant: str = "sp1024",
    train_shards: int = DEFAULT_TRAIN_SHARDS,
    with_docs: bool = False,
    repo_id: str = DEFAULT_REPO_ID,
    root: str = DEFAULT_ROOT,
    revision: str | None = None,
    endpoint: str | None = None,
    progress: bool = True,
) -> FinewebDataset:
    """Fetch (or resume fetching) a FineWeb variant into ``out_dir``; see the module docstring.

    ``endpoint`` defaults to huggingface_hub's (``HF_ENDPOINT`` or the public Hub).
    """
    root_dir = Path(out_dir)
    vocab = variant_vocab(variant)  # reject a bad variant before touching the network
    name = dataset_name(variant)

    def say(msg: str) -> None:
        if progress:
            print(f"fineweb: {msg}", file=sys.stderr, flush=True)

    bars = progress and sys.stderr.isatty()
    fetcher = _Fetcher(root_dir, repo_id, root, revision, endpoint, say, bars)
    t0 = time.perf_counter()
    root_dir.mkdir(parents=True, exist_ok=True)
    tokenizer = None
    try:
        manifest = fetcher.load_manifest(name)
        plan, vocab = plan_files(manifest, variant, train_shards, with_docs)
        say(f"{name}: {len(plan)} files to have (tokenizer, {sum(1 for p in plan if '_val_' in p.relpath)} "
            f"val shards, {train_shards} train shards{', docs' if with_docs else ''}) in {root_dir}")
        for i, item in enumerate(plan, 1):
            path = fetcher.ensure(item, vocab, f"[{i}/{len(plan)}]")
            if item.kind == "tokenizer":
                tokenizer = path
    finally:
        # Partial transfers cannot be resumed by a later process (huggingface_hub names them
        # per process), so nothing in the staging folder is worth keeping.
        fetcher.cleanup()
    assert tokenizer is not None  # plan_files always lists the tokenizer
    data_dir = root_dir / "datasets" / name
    requested = {PurePosixPath(p.relpath).name for p in plan}
    extra = sorted(p.name for p in data_dir.glob("fineweb_train_*.bin") if p.name not in requested)
    if extra:
        say(f"note: {len(extra)} more train shard(s) from an earlier run are in {data_dir} "
            f"(the trainer uses every shard in the folder): {extra[0]} ...")
    say(f"done in {time.perf_counter() - t0:.1f}s: {fetcher.downloaded} fetched, {fetcher.skipped} already valid")
    return FinewebDataset(
        root_dir=root_dir,
        data_dir=data_dir,
        tokenizer=tokenizer,
        train_shards=train_shards,
        val_shards=sum(1 for p in plan if "_val_" in p.relpath),
        downloaded=fetcher.downloaded,
        skipped=fetcher.skipped,
    )
