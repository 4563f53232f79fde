#!/usr/bin/env python3
"""Renders every kustomize overlay under deploy/k8s/overlays with `kubectl kustomize` and checks
what an operator would otherwise find out from a failed rollout: images set (a registry and a
pinned tag), resources and probes present, labels and selectors consistent, ports referenced
by name exist, $(VAR)s come from the ConfigMap, secrets are mounted where the flags point, and
every flag a container passes is one `qshard <command> --help` lists.

    k8s_render_test.py QSHARD_BINARY K8S_DIR
Exits 77 (skipped) without kubectl or PyYAML.
"""
import os
import re
import shutil
import subprocess
import sys
import unittest

try:
    import yaml
except ImportError:
    yaml = None

QSHARD = None

def render(overlay):
    out = subprocess.run(["kubectl", "kustomize", overlay], check=True, capture_output=True, text=True).stdout
    return [doc for doc in yaml.safe_load_all(out) if doc]


def matches(selector, labels):
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


_help_cache = {}


def accepted_flags(command):
    if command not in _help_cache:
        text = subprocess.run([QSHARD, command, "--help"], check=True, capture_output=True, text=True).stdout
        _help_cache[command] = set(re.findall(r"(--[a-z][a-z0-9-]*)", text))
    return _help_cache[command]


class OverlayChecks:
    """The checks every overlay passes; a unittest.TestCase per overlay mixes them in."""
    overlay = None

    @classmethod
    def setUpClass(cls):
        cls.docs = render(cls.overlay)
        cls.by_kind = {}
        for doc in cls.docs:
            cls.by_kind.setdefault(doc["kind"], []).append(doc)

    def one(self, kind, name):
        found = [d for d in self.by_kind.get(kind, []) if d["metadata"]["name"] == name]
        self.assertEqual(len(found), 1, f"{kind}/{name}")
        return found[0]

    def workloads(self):
        return self.by_kind.get("Deployment", []) + self.by_kind.get("StatefulSet", [])

    def config(self):
        (config,) = [c for c in self.by_kind["ConfigMap"] if c["metadata"]["name"].startswith("qshard-config")]
        return config

    def test_everything_in_one_namespace(self):
        namespaces = {d["metadata"].get("namespace") for d in self.docs if d["kind"] != "Namespace"}
        (namespace,) = [d["metadata"]["name"] for d in self.by_kind["Namespace"]]
        self.assertEqual(namespaces, {namespace})

    def test_images_are_pinned_in_a_registry(self):
        for w in self.workloads():
            for c in w["spec"]["template"]["spec"]["containers"]:
                name, _, tag = c["image"].rpartition(":")
                self.assertIn("/", name, f"{c['image']}: no registry (the overlay's images: entry)")
                self.assertTrue(tag and tag != "latest", f"{c['image']}: no pinned tag")

    def test_containers_have_resources_probes_and_hardening(self):
        for w in self.workloads():
            spec = w["spec"]["template"]["spec"]
            self.assertTrue(spec["securityContext"]["runAsNonRoot"])
            for c in spec["containers"]:
                where = f"{w['metadata']['name']}/{c['name']}"
                for section in ("requests", "limits"):
                    for resource in ("cpu", "memory"):
                        self.assertIn(resource, c["resources"][section], f"{where}: {section}.{resource}")
                # Probes run `qshard health` in the pod on the health port, which stays on loopback
                # (plaintext: conventions.md), so nothing outside the pod reaches it.
                listen = [a for a in c["args"] if a.startswith("--health-listen=")]
                self.assertEqual(len(listen), 1, where)
                address = listen[0].split("=", 1)[1]
                self.assertTrue(address.startswith("127.0.0.1:"), f"{where}: health port {address} off loopback")
                self.assertNotIn("health", {p["name"] for p in c["ports"]}, f"{where}: the health port is exposed")
                for probe in ("livenessProbe", "readinessProbe"):
                    self.assertIn(probe, c, where)
                    command = c[probe]["exec"]["command"]
                    self.assertEqual(command[1:4], ["health", "--address", address], f"{where}: {probe}")
                    self.assertTrue(command[0].endswith("/qshard"), f"{where}: {probe} runs {command[0]}")
                    for flag in (a for a in command[2:] if a.startswith("--")):
                        self.assertIn(flag, accepted_flags("health"), f"{where}: {probe}: qshard health has no {flag}")
                self.assertFalse(c["securityContext"]["allowPrivilegeEscalation"], where)
                self.assertTrue(c["securityContext"]["readOnlyRootFilesystem"], where)

    def test_selectors_match_their_pods(self):
        pods = {w["metadata"]["name"]: w["spec"]["template"]["metadata"]["labels"] for w in self.workloads()}
        for w in self.workloads():
            self.assertTrue(matches(w["spec"]["selector"]["matchLabels"], pods[w["metadata"]["name"]]))
        for service in self.by_kind["Service"]:
            selected = [n for n, labels in pods.items() if matches(service["spec"]["selector"], labels)]
            self.assertEqual(len(selected), 1, f"Service {service['metadata']['name']} selects {selected}")
            ports = {p["name"] for w in self.workloads() if w["metadata"]["name"] == selected[0]
                     for c in w["spec"]["template"]["spec"]["containers"] for p in c["ports"]}
            for port in service["spec"]["ports"]:
                self.assertIn(port["targetPort"], ports, f"Service {service['metadata']['name']}")
        (pdb,) = self.by_kind["PodDisruptionBudget"]
        self.assertTrue(matches(pdb["spec"]["selector"]["matchLabels"], pods["qshard-worker"]))
        coordinator = self.one("StatefulSet", "qshard-coordinator")
        self.assertEqual(self.one("Service", coordinator["spec"]["serviceName"])["spec"]["clusterIP"], "None")
        anti = pods["qshard-worker"]
        term = self.one("Deployment", "qshard-worker")["spec"]["template"]["spec"]["affinity"]["podAntiAffinity"]
        (preferred,) = term["preferredDuringSchedulingIgnoredDuringExecution"]
        self.assertTrue(matches(preferred["podAffinityTerm"]["labelSelector"]["matchLabels"], anti))

    def test_service_monitor_scrapes_named_metrics_ports(self):
        (monitor,) = self.by_kind["ServiceMonitor"]
        selected = [s for s in self.by_kind["Service"] if matches(monitor["spec"]["selector"]["matchLabels"],
                                                                  s["metadata"].get("labels", {}))]
        self.assertEqual({s["metadata"]["name"] for s in selected}, {"qshard-coordinator", "qshard-worker-metrics"})
        for endpoint in monitor["spec"]["endpoints"]:
            for service in selected:
                self.assertIn(endpoint["port"], [p["name"] for p in service["spec"]["ports"]])

    def test_network_policy_admits_workers_and_clients_only(self):
        policy = self.one("NetworkPolicy", "qshard-coordinator")
        coordinator = self.one("StatefulSet", "qshard-coordinator")["spec"]["template"]["metadata"]["labels"]
        worker = self.one("Deployment", "qshard-worker")["spec"]["template"]["metadata"]["labels"]
        self.assertTrue(matches(policy["spec"]["podSelector"]["matchLabels"], coordinator))
        grpc_rules = [r for r in policy["spec"]["ingress"] if {"port": "grpc"} in r.get("ports", [])]
        self.assertEqual(len(grpc_rules), 1)
        sources = grpc_rules[0]["from"]
        self.assertTrue(any(matches(s.get("podSelector", {}).get("matchLabels"), worker) and
                            "namespaceSelector" not in s for s in sources))
        self.assertTrue(any(s.get("podSelector", {}).get("matchLabels") == {"qshard.io/client": "true"}
                            for s in sources))
        for rule in policy["spec"]["ingress"]:  # every rule names its ports; none opens grpc to all
            self.assertTrue(rule.get("ports"))
            if {"port": "grpc"} in rule["ports"]:
                self.assertTrue(rule.get("from"))

    def test_flags_are_flags_the_binary_accepts(self):
        keys = set(self.config()["data"])
        for w in self.workloads():
            for c in w["spec"]["template"]["spec"]["containers"]:
                command, *flags = c["args"]
                env = keys | {e["name"] for e in c.get("env", [])}
                for flag in flags:
                    name = flag.split("=", 1)[0]
                    for var in re.findall(r"\$\((\w+)\)", flag):
                        self.assertIn(var, env, f"{command} {flag}: $({var}) is not set")
                    self.assertIn(name, accepted_flags(command), f"qshard {command} has no {name}")

    def test_flag_paths_are_mounted(self):
        for w in self.workloads():
            spec = w["spec"]["template"]["spec"]
            volumes = {v["name"]: v for v in spec.get("volumes", [])}
            claims = {t["metadata"]["name"] for t in w["spec"].get("volumeClaimTemplates", [])}
            for c in spec["containers"]:
                mounts = {m["mountPath"]: m["name"] for m in c["volumeMounts"]}
                for m in mounts.values():
                    self.assertTrue(m in volumes or m in claims, f"volume {m} is not defined")
                for flag in c["args"]:
                    name, _, value = flag.partition("=")
                    if not value.startswith("/"):
                        continue
                    under = [p for p in mounts if value == p or value.startswith(p + "/")]
                    self.assertTrue(under, f"{name}={value} is on no volume")
                    volume = volumes.get(mounts[under[0]], {})
                    if name in ("--tls-cert", "--tls-key", "--tls-ca", "--token-file"):
                        self.assertIn("secret", volume, f"{name} is not read from a Secret")
                    if name == "--state-dir":
                        self.assertIn(mounts[under[0]], claims, "the state dir is not on a persistent volume")
                    if name == "--allowed-root":
                        self.assertIn("persistentVolumeClaim", volume)
        claims = {c["metadata"]["name"]: c for c in self.by_kind["PersistentVolumeClaim"]}
        for w in self.workloads():
            for volume in w["spec"]["template"]["spec"].get("volumes", []):
                if "persistentVolumeClaim" in volume:
                    self.assertIn(volume["persistentVolumeClaim"]["claimName"], claims)
        self.assertIn("storage", claims["qshard-data"]["spec"]["resources"]["requests"])

    def test_worker_pool_is_large_enough_for_a_job(self):
        workers = self.one("Deployment", "qshard-worker")
        self.assertGreaterEqual(workers["spec"]["replicas"], int(self.config()["data"]["QSHARD_WORKERS"]))


class CpuDevTest(OverlayChecks, unittest.TestCase):
    overlay = "cpu-dev"

    def test_no_gpu(self):
        self.assertNotIn("nvidia.com/gpu", yaml.safe_dump(self.docs))


class GpuTest(OverlayChecks, unittest.TestCase):
    overlay = "gpu"

    def test_workers_request_one_gpu_each(self):
        (c,) = self.one("Deployment", "qshard-worker")["spec"]["template"]["spec"]["containers"]
        self.assertEqual(c["resources"]["limits"]["nvidia.com/gpu"], 1)
        coordinator = self.one("StatefulSet", "qshard-coordinator")
        self.assertNotIn("nvidia.com/gpu", yaml.safe_dump(coordinator), "the coordinator needs no GPU")

    def test_workers_run_on_their_gpu_and_validate_there(self):
        config = self.config()["data"]
        (worker,) = self.one("Deployment", "qshard-worker")["spec"]["template"]["spec"]["containers"]
        self.assertIn("--device=$(QSHARD_WORKER_DEVICE)", worker["args"])
        self.assertEqual(config["QSHARD_WORKER_DEVICE"], "cuda")
        (coordinator,) = self.one("StatefulSet", "qshard-coordinator")["spec"]["template"]["spec"]["containers"]
        self.assertIn("--validate-on=$(QSHARD_VALIDATE_ON)", coordinator["args"])
        self.assertEqual(config["QSHARD_VALIDATE_ON"], "worker", "a coordinator without a GPU validates on a worker")


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    if yaml is None or shutil.which("kubectl") is None:
        print("skipped: needs kubectl and PyYAML (python3-yaml)")
        sys.exit(77)
    QSHARD, k8s = os.path.abspath(sys.argv[1]), sys.argv[2]
    OVERLAY_TESTS = (CpuDevTest, GpuTest)
    overlays = sorted(os.listdir(os.path.join(k8s, "overlays")))
    if set(overlays) != {c.overlay for c in OVERLAY_TESTS}:
        sys.exit(f"overlays {overlays}: add a test class for each overlay")
    for test_class in OVERLAY_TESTS:
        test_class.overlay = os.path.join(k8s, "overlays", test_class.overlay)
    del test_class  # unittest would collect it a second time
    unittest.main(argv=sys.argv[:1], verbosity=2)
