"""Clusters: expressions, files, presets, round trips and one-message errors."""

from __future__ import annotations

import pytest

from edgeweave.cluster import Cluster, load, presets
from edgeweave.errors import ClusterConfigError, EdgeweaveError, UnknownNameError


def test_expression_of_two_devices():
    cluster = Cluster.load("rpi4b+edge-server@wifi")
    assert cluster.names == ("rpi4b", "edge-server")
    link = cluster.link("edge-server", "rpi4b")
    assert (link.bandwidth_bps, link.latency_s, link.medium) == (18.88e6, 0.002, "wifi")
    server = cluster.device("edge-server")
    assert server.kind == "edge-server"
    assert server.flops_per_s == presets.DEVICES["edge-server"]["flops_per_s"]


def test_expression_with_counts_numbers_repeated_presets():
    cluster = load("rpi4b*3+jetson-tx2*2+edge-server@4g")
    assert cluster.names == ("rpi4b-0", "rpi4b-1", "rpi4b-2", "jetson-tx2-0", "jetson-tx2-1",
                             "edge-server")
    assert len(cluster.links) == 15 and all(link.medium is None for link in cluster.links)
    assert len(load("rpi3*6@wifi").links) == 15
    alone = load("rpi4b")
    assert alone.names == ("rpi4b",) and alone.links == ()


@pytest.mark.parametrize("text, message", [
    ("rpi4b+edge-server", "neither a cluster file nor an expression"),
    ("rpi4b*0@wifi", r"Cannot read 'rpi4b\*0'"),
    ("rpi4b+@wifi", "Cannot read ''"),
])
def test_bad_expressions(text, message):
    with pytest.raises(ClusterConfigError, match=message):
        load(text)


def test_unknown_presets_list_the_known_ones():
    with pytest.raises(UnknownNameError, match="Unknown device preset 'rpi5'.*rpi4b"):
        load("rpi5@wifi")
    with pytest.raises(UnknownNameError, match="Unknown network preset '5g'.*wifi"):
        load("rpi4b+rpi3@5g")


def test_yaml_file_with_overrides_and_explicit_links(tmp_path):
    path = tmp_path / "lab.yaml"
    path.write_text("""
name: lab
network: wifi
devices:
  - {name: camera, preset: rpi4b, threads: 2}
  - {name: helper, preset: rpi3}
  - name: box
    flops_per_s: 1.0e+10
    memory_bytes_per_s: 1.0e+10
    layer_overhead_s: 0.0
    memory_bytes: 2.0e+9
links:
  - {between: [camera, box], preset: ethernet}
  - {between: [helper, box], bandwidth_bps: 5.0e+6, latency_s: 0.01}
""")
    cluster = load(path)
    assert cluster.name == "lab" and cluster.names == ("camera", "helper", "box")
    assert cluster.device("camera").threads == 2 and cluster.device("box").kind == "custom"
    assert cluster.link("box", "camera").bandwidth_bps == 1e9
    assert cluster.link("helper", "box").latency_s == 0.01
    assert cluster.link("camera", "helper").medium == "wifi"
    assert Cluster.load(cluster.to_dict()) == cluster
    assert load(str(path)) == cluster


@pytest.mark.parametrize("body, message", [
    ("devices: []", "devices: List should have at least 1 item"),
    ("devices: [{name: a, preset: rpi4b, colour: red}]", "devices.0.colour: Extra inputs"),
    ("devices: [{name: a, flops_per_s: fast}]", "devices.0.flops_per_s: Input should be a "
                                                "valid number"),
    ("devices: [{name: a, flops_per_s: 1.0}]", "Device 'a' needs a preset or the field"),
    ("devices: [{name: a, preset: rpi4b}, {name: a, preset: rpi3}]", "repeated: \\['a'\\]"),
    ("devices: [{name: a, preset: rpi4b}]\nlinks: [{between: [a, b], preset: wifi}]",
     "names device 'b', which is not in the cluster"),
    ("devices: [{name: a, preset: rpi4b}, {name: b, preset: rpi4b}]\n"
     "links: [{between: [a, b]}]", "needs a preset or both bandwidth_bps and latency_s"),
    ("devices: [{name: a, preset: rpi4b, threads: 1000000}]",
     "devices.0.threads: Input should be less than or equal to 256"),
    ("devices: [{name: a, preset: rpi4b}, {name: b, preset: rpi4b}]\n"
     "links: [{between: [a, b], preset: wifi}, {between: [b, a], preset: 4g}]",
     "at most one link; given twice: \\[\\['a', 'b'\\]\\]"),
    ("just a string", "must be a mapping with 'devices'"),
    ("devices: [{name: a", "is not valid YAML"),
])
def test_malformed_files_get_one_clear_message(tmp_path, body, message):
    path = tmp_path / "bad.yaml"
    path.write_text(body)
    with pytest.raises(ClusterConfigError, match=message) as caught:
        load(path)
    assert "\n" not in str(caught.value).strip() or "YAML" in str(caught.value)


def test_missing_things_are_named(tmp_path):
    with pytest.raises(ClusterConfigError, match="No cluster file"):
        load("nowhere.yaml")
    with pytest.raises(ClusterConfigError, match="is a folder; give a cluster file"):
        load(str(tmp_path))
    cluster = load("rpi4b+edge-server@wifi")
    with pytest.raises(EdgeweaveError, match="has no device 'gpu'.*rpi4b, edge-server"):
        cluster.device("gpu")
    with pytest.raises(EdgeweaveError, match="no device 'gpu'"):
        cluster.link("rpi4b", "gpu")


def test_every_preset_loads():
    for name in presets.DEVICES:
        assert load(name).devices[0].memory_bytes > 0
    for name in presets.NETWORKS:
        assert load(f"rpi4b+rpi3@{name}").links[0].bandwidth_bps > 0
