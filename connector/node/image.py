"""Container images of the local engines, built here from what the local nodes already run.

No registry is needed: the base image is Debian made by `debootstrap --variant=minbase` and
imported into Docker (`splade-os/base:bookworm`), and each engine's image adds the Maven Central
distribution the local launcher uses (`ensure_distribution`) and the JDK it finds
(`find_java_home`), tagged with the engine's version (`splade-os/opensearch:3.5.0`). An image
that exists is reused. The image starts one node with the settings a local node gets; like the
official images, every environment variable with a dot in its name is passed on as a setting
(`discovery.type=single-node`, `xpack.security.enabled=false`), and the engine lives where the
official images keep it (`/usr/share/<engine>`, data in its `data/`, user id 1000), so
Testcontainers' OpenSearch and Elasticsearch containers and Compose use it the usual way.

Which image a container runs is one setting per engine: $SPLADE_OS_OPENSEARCH_IMAGE or
$SPLADE_OS_ELASTICSEARCH_IMAGE, else the local tag when it exists, else the official image
(where a registry is reachable).

Example:
    >>> build_image("opensearch")
    'splade-os/opensearch:3.5.0'
"""

import hashlib
import json
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from splade_os.common.errors import NodeError
from splade_os.common.progress import note
from splade_os.node.distribution import ensure_distribution
from splade_os.node.engines import node_engine
from splade_os.node.java import find_java_home

BASE_IMAGE = "splade-os/base:bookworm"
OFFICIAL = {"opensearch": "opensearchproject/opensearch", "elasticsearch": "elasticsearch"}
USER_ID = 1000  # the engines refuse to run as root

DOCKERFILE = """FROM {base}
COPY --chown={uid}:{uid} jdk /opt/jdk
COPY --chown={uid}:{uid} engine /usr/share/{name}
COPY entrypoint.sh /opt/entrypoint.sh
RUN echo '{name}:x:{uid}:{uid}::/usr/share/{name}:/bin/sh' >> /etc/passwd && echo '{name}:x:{uid}:' >> /etc/group \\
    && chmod 755 /opt/entrypoint.sh
ENV {java_home_var}=/opt/jdk HOME=/usr/share/{name}
USER {uid}:{uid}
WORKDIR /usr/share/{name}
EXPOSE 9200
ENTRYPOINT ["/opt/entrypoint.sh"]
LABEL org.opencontainers.image.title="splade-os {name} {version}" splade-os.recipe="{recipe}"
"""

# Every variable with a dot in its name is a setting, as the official images read them.
ENTRYPOINT = """#!/bin/bash
set -e
settings=()
while IFS='=' read -r name value; do
  case "$name" in *.*) settings+=("-E" "$name=$value");; esac
done < <(env)
exec bin/{script} "${{settings[@]}}" "$@"
"""


def _docker(*args, capture: bool = True, stdin=None, check: bool = False) -> subprocess.CompletedProcess:
    try:
        return subprocess.run(["docker", *args], capture_output=capture, text=stdin is None, stdin=stdin,
                              check=check)
    except FileNotFoundError:
        raise NodeError("no docker command: install a Docker engine (Debian: apt-get install docker.io)") from None


def docker_answers() -> bool:
    """Whether a docker command is installed and its engine answers."""
    if shutil.which("docker") is None:
        return False
    return subprocess.run(["docker", "info"], capture_output=True).returncode == 0


def image_exists(tag: str) -> bool:
    """Whether the Docker engine has image `tag` (False without a Docker engine: the inspect fails)."""
    return shutil.which("docker") is not None and _docker("image", "inspect", tag).returncode == 0


def local_tag(engine="opensearch") -> str:
    """The tag `build_image` gives the engine's image, e.g. "splade-os/opensearch:3.5.0"."""
    spec = node_engine(engine)
    return f"splade-os/{spec.name}:{spec.version}"


def image_name(engine="opensearch") -> str:
    """The image a container of the engine runs: $SPLADE_OS_<ENGINE>_IMAGE, else the local image
    when it exists, else the official one."""
    spec = node_engine(engine)
    chosen = os.environ.get(f"SPLADE_OS_{spec.name.upper()}_IMAGE")
    if chosen:
        return chosen
    tag = local_tag(spec)
    return tag if image_exists(tag) else f"{OFFICIAL[spec.name]}:{spec.version}"


def build_image(engine="opensearch", show_progress: bool = True, rebuild: bool = False) -> str:
    """Build (or reuse) the engine's local image; returns its tag.

    Raises:
        NodeError: no Docker engine answers, debootstrap is missing (for the base image), or a
            build step failed (its last lines are in the message).
    """
    spec = node_engine(engine)
    tag = local_tag(spec)
    if not docker_answers():
        raise NodeError("no Docker engine answers (`docker info` failed): install one (Debian: apt-get install "
                        "docker.io) and start it (dockerd)")
    recipe = _recipe(spec)
    if not rebuild and _label(tag) == recipe:
        return tag  # built from this very recipe (an image from an older one is built again)
    _ensure_base(show_progress)
    home = ensure_distribution(spec.name, show_progress=show_progress)
    java = find_java_home(spec.name, *spec.java_range(spec.version))
    note(show_progress, f"Building image {tag} from {home.name} and the JDK in {java}...")
    with tempfile.TemporaryDirectory(prefix="splade-os-image-") as folder:
        context = Path(folder)
        _copy(java, context / "jdk")
        _copy(home, context / "engine")
        _configure(spec, context / "engine")
        (context / "entrypoint.sh").write_text(ENTRYPOINT.format(script=spec.start_script))
        (context / "Dockerfile").write_text(DOCKERFILE.format(
            base=BASE_IMAGE, uid=USER_ID, java_home_var=spec.java_home_var, name=spec.name, version=spec.version,
            recipe=recipe))
        _run_step(["docker", "build", "-q", "-t", tag, str(context)], f"building {tag}")
    return tag


def _recipe(spec) -> str:
    """A short hash of how the image is made (Dockerfile, entrypoint, settings)."""
    made = DOCKERFILE + ENTRYPOINT + json.dumps(_settings(spec), sort_keys=True) + spec.version
    return hashlib.sha256(made.encode("utf-8")).hexdigest()[:16]


def _label(tag: str) -> str:
    """The image's recipe label ("" when the image does not exist)."""
    answer = _docker("image", "inspect", "--format", '{{ index .Config.Labels "splade-os.recipe" }}', tag)
    return answer.stdout.strip() if answer.returncode == 0 else ""


def _ensure_base(show_progress: bool) -> None:
    """The Debian base image, made with debootstrap from Debian's mirror (the one apt uses) once."""
    if image_exists(BASE_IMAGE):
        return
    if shutil.which("debootstrap") is None:
        raise NodeError(f"the base image {BASE_IMAGE} is missing and so is debootstrap to make it: "
                        "apt-get install debootstrap")
    if os.geteuid() != 0:
        raise NodeError(f"making the base image {BASE_IMAGE} with debootstrap needs root")
    note(show_progress, f"Making the base image {BASE_IMAGE} with debootstrap (about a minute, once)...")
    with tempfile.TemporaryDirectory(prefix="splade-os-rootfs-") as root:
        _run_step(["debootstrap", "--variant=minbase", "bookworm", root], "debootstrap")
        tar = subprocess.Popen(["tar", "-C", root, "-c", "."], stdout=subprocess.PIPE)
        imported = _docker("import", "-", BASE_IMAGE, stdin=tar.stdout)
        tar.wait()
        if imported.returncode != 0 or tar.returncode != 0:
            raise NodeError(f"importing {BASE_IMAGE} failed: {imported.stderr.decode(errors='replace')[-300:]}")


def _copy(source: Path, target: Path) -> None:
    # Hard links where the cache and the temp folder share a filesystem: a build context of ~500 MB
    # then costs no copy.
    try:
        shutil.copytree(source, target, symlinks=True, copy_function=os.link)
    except OSError:
        shutil.rmtree(target, ignore_errors=True)
        shutil.copytree(source, target, symlinks=True)


def _settings(spec) -> dict:
    return {"network.host": "0.0.0.0", "http.port": 9200, "discovery.type": "single-node",
            "cluster.routing.allocation.disk.threshold_enabled": False, **spec.settings}


def _configure(spec, home: Path) -> None:
    """The image's settings file (a fresh file: the hard-linked original is not touched)."""
    settings = _settings(spec)
    config = home / "config" / spec.config_file
    config.unlink()
    config.write_text("".join(f"{key}: {json.dumps(value)}\n" for key, value in settings.items()))
    (home / "data").mkdir(exist_ok=True)  # a named volume mounted here starts with the image's owner
    heap = home / "config" / "jvm.options.d" / "heap.options"
    heap.parent.mkdir(exist_ok=True)
    heap.write_text("-Xms512m\n-Xmx512m\n")


def _run_step(command, what: str) -> None:
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        tail = " | ".join((result.stderr or result.stdout).strip().splitlines()[-3:])
        raise NodeError(f"{what} failed (exit {result.returncode}): {tail}")
