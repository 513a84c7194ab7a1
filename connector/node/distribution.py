"""Fetching a search engine's distribution into the cache: `mvn dependency:copy`, then unpack.

Both steps write beside their target and rename at the end, so an interrupted run never leaves a
half-written zip or folder that a later run would trust. A module splade-os needs that the zip
lacks (mapper-extras before OpenSearch 3.5) is fetched the same way and added while unpacking.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
import zipfile
from pathlib import Path
from typing import Optional

from splade_os.common.cache import cache_dir
from splade_os.common.errors import NodeError
from splade_os.common.files import staged_dir
from .engines import node_engine, version_key
from .logs import progress, shorten


def ensure_distribution(engine="opensearch", version: Optional[str] = None, show_progress: bool = True) -> Path:
    """Return the unpacked distribution home, e.g. `cache_dir()/dist/opensearch-3.5.0`.

    Downloads the zip with Maven when it is not cached yet (`cache_dir()/dist/<name>.zip`), then
    unpacks it, adding the modules splade-os needs that the zip lacks (`NodeEngine.modules`).

    Args:
        engine: "opensearch" or "elasticsearch".
        version: the engine version; default the spec's (OpenSearch 3.5.0, Elasticsearch 8.19.21).
        show_progress: say on stderr what is downloaded and unpacked.

    Raises:
        InputError: `version` is not a version number.
        NodeError: mvn is missing, the download failed (e.g. Maven Central has no such version), or
            the zip is bad.
    """
    spec = node_engine(engine)
    version = version or spec.version
    version_key(version)  # refuses a version that is not numbers and dots, before Maven is asked
    dist = cache_dir() / "dist"
    home = dist / spec.home_name(version)
    if spec.script(home).is_file():
        return home
    archive = dist / f"{spec.home_name(version)}.zip"
    if not archive.is_file():
        progress(show_progress, f"downloading {spec.label} {version} with Maven (about {spec.size_mb} MB, once)")
        _maven_copy(spec.coordinates(version), archive, f"{spec.label} {version}")
        progress(show_progress, f"downloaded {archive}")
    _unpack(spec, version, archive, home, show_progress)
    return home


def _maven_copy(artifact: str, target: Path, what: str) -> None:
    """Copy a Maven artifact (e.g. "group:name:1.0:zip") to `target`, a file named as Maven names it."""
    mvn = shutil.which("mvn")
    if mvn is None:
        raise NodeError(f"cannot download {what}: Maven ('mvn') is not on PATH; install Maven, "
                        f"or put {target.name} into {target.parent}")
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".download-", dir=target.parent) as tmp:
        command = [mvn, "-q", "-B", "dependency:copy", f"-Dartifact={artifact}", f"-DoutputDirectory={tmp}"]
        try:
            # cwd is the empty temp dir so that no pom.xml around the caller can interfere.
            result = subprocess.run(command, cwd=tmp, stdin=subprocess.DEVNULL, capture_output=True, text=True)
        except OSError as exc:
            raise NodeError(f"cannot run Maven to download {what}: {exc}") from None
        fetched = [path for path in Path(tmp).iterdir() if path.is_file()]
        if result.returncode != 0 or len(fetched) != 1:
            reason = _first_maven_error(result.stdout + "\n" + result.stderr)
            raise NodeError(f"Maven could not download {what}: {reason}")
        os.replace(fetched[0], target)


def _first_maven_error(output: str) -> str:
    # Maven may colour its output even when it is not a terminal; drop the escape codes.
    lines = [re.sub(r"\x1b\[[0-9;]*m", "", line).strip() for line in output.splitlines()]
    errors = [line for line in lines if line.startswith("[ERROR]") and line != "[ERROR]"]
    lines = errors or [line for line in lines if line]
    return shorten(lines[0] if lines else "no output from mvn")


def _unpack(spec, version: str, archive: Path, home: Path, show_progress: bool) -> None:
    progress(show_progress, f"unpacking {archive.name}")
    # A home without its start script is no distribution: replace it; a complete one that
    # another process unpacked meanwhile is as good as ours.
    with staged_dir(home, replace=home.exists()) as staging:
        try:
            with zipfile.ZipFile(archive) as zf:
                _extract(zf, f"{home.name}/", staging)
        except zipfile.BadZipFile as exc:
            # A truncated download would otherwise fail the same way forever.
            archive.unlink(missing_ok=True)
            raise NodeError(f"{archive} is not a valid zip ({exc}); removed it, run again to re-download") from None
        if not spec.script(staging).is_file():
            raise NodeError(f"{archive} does not contain {home.name}/bin/{spec.start_script}")
        # Also make every Unix script in bin/ executable, in case the zip had no modes at all.
        for script in (staging / "bin").iterdir():
            if script.is_file() and script.suffix not in (".bat", ".exe"):
                script.chmod(0o755)
        _add_modules(spec, version, staging, show_progress)
        staging.chmod(0o755)  # a temp folder is private; the node may run as another user
    progress(show_progress, f"{spec.label} home is {home}")


def _add_modules(spec, version: str, home: Path, show_progress: bool) -> None:
    """Put each module splade-os needs that the zip lacks into `home/modules/<name>/`."""
    for module in spec.modules:
        folder = home / "modules" / module.name
        if folder.is_dir():
            continue
        artifact = module.artifact.format(version=version)
        progress(show_progress, f"adding the {module.name} module ({artifact}), which this zip lacks")
        _maven_copy(artifact, folder / f"{artifact.split(':')[1]}-{version}.jar", f"{module.name} {version}")
        descriptor = {
            "name": module.name,
            "description": module.description,
            "version": version,
            f"{spec.name}.version": version,
            "java.version": str(spec.java_range(version)[0]),
            "classname": module.classname(version),
        }
        (folder / "plugin-descriptor.properties").write_text("".join(f"{k}={v}\n" for k, v in descriptor.items()))


def _extract(zf: zipfile.ZipFile, prefix: str, target: Path) -> None:
    """Extract the members under `prefix` into `target` (without the prefix), with their modes."""
    for info in zf.infolist():
        if not info.filename.startswith(prefix) or info.filename == prefix:
            continue
        info.filename = info.filename[len(prefix):]
        path = Path(zf.extract(info, target))
        # zipfile does not restore file modes; put back the executable bits the zip recorded
        # (Unix zips keep the mode in the high 16 bits of external_attr).
        mode = (info.external_attr >> 16) & 0o777
        if not info.is_dir() and mode & 0o111 and path.is_file():
            path.chmod(mode)
