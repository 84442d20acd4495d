#!/usr/bin/env python3
"""Drives rkube's public gRPC API from Python, with stubs generated from the .proto files alone.

Proves that a client in another language needs nothing but `proto/` and a kubeconfig: it creates
a ConfigMap, watches it change twice, reads it back, and checks that conflicts, missing
credentials and the standard health service behave as `api.proto` documents.

    python api_client_test.py <api address> <admin.kubeconfig> <proto dir>

Needs grpcio, grpcio-tools and grpcio-health-checking (and PyYAML if present). Prints
`PYTHON CLIENT OK` and exits 0 on success; prints what went wrong and exits 1 otherwise.
"""

import base64
import importlib
import json
import os
import subprocess
import sys
import tempfile

import grpc

# Every unary call gets this deadline, the watch a longer one: nothing may hang.
CALL_TIMEOUT = 10.0
WATCH_TIMEOUT = 30.0
SERVER_NAME = "rkube-server"
NAMESPACE = "default"
NAME = "python-client-%d" % os.getpid()


class Failure(Exception):
    """A check that did not hold; the message says which and what was seen."""


def check(condition, message):
    if not condition:
        raise Failure(message)


def generate_stubs(proto_dir, out_dir):
    """Run protoc (from grpcio-tools) on api.proto and make the generated package importable."""
    cmd = [
        sys.executable,
        "-m",
        "grpc_tools.protoc",
        "-I",
        proto_dir,
        "--python_out=" + out_dir,
        "--grpc_python_out=" + out_dir,
        "rkube/api/v1/api.proto",
    ]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    if result.returncode != 0:
        raise Failure(
            "protoc failed (exit %d): %s%s" % (result.returncode, result.stdout, result.stderr)
        )
    sys.path.insert(0, out_dir)
    api_pb2 = importlib.import_module("rkube.api.v1.api_pb2")
    api_pb2_grpc = importlib.import_module("rkube.api.v1.api_pb2_grpc")
    return api_pb2, api_pb2_grpc


def read_kubeconfig(path):
    """The CA certificate (PEM) and bearer token of the kubeconfig's first cluster and user."""
    with open(path, encoding="utf-8") as f:
        text = f.read()
    try:
        import yaml
    except ImportError:
        yaml = None
    if yaml is not None:
        config = yaml.safe_load(text)
        ca_b64 = config["clusters"][0]["cluster"]["certificate-authority-data"]
        token = config["users"][0]["user"]["token"]
    else:
        # Without PyYAML: the two fields are plain `key: value` lines; take the first of each.
        fields = {}
        for line in text.splitlines():
            key, sep, value = line.strip().lstrip("- ").partition(":")
            if sep and key in ("certificate-authority-data", "token") and key not in fields:
                fields[key] = value.strip().strip("'\"")
        check(
            len(fields) == 2,
            "%s lacks certificate-authority-data or a user token: found %s"
            % (path, sorted(fields)),
        )
        ca_b64, token = fields["certificate-authority-data"], fields["token"]
    check(bool(token), "%s has an empty user token" % path)
    return base64.b64decode(ca_b64), token


def expect_error(call, code, what):
    """Run `call`, which must fail with `code`; returns the grpc.RpcError."""
    try:
        call()
    except grpc.RpcError as e:
        check(
            e.code() == code,
            "%s: expected %s, got %s: %s" % (what, code, e.code(), e.details()),
        )
        return e
    raise Failure("%s: expected %s, but the call succeeded" % (what, code))


def metadata_value(err, key):
    """A key from an error's trailing (or, for trailers-only responses, initial) metadata."""
    for md in (err.trailing_metadata() or (), err.initial_metadata() or ()):
        for k, v in md:
            if k == key:
                return v
    return None


def configmap_json(obj):
    return json.loads(obj.json.decode("utf-8"))


def run(addr, kubeconfig, proto_dir):
    ca, token = read_kubeconfig(kubeconfig)
    with tempfile.TemporaryDirectory(prefix="rkube-py-stubs-") as stubs:
        api_pb2, api_pb2_grpc = generate_stubs(proto_dir, stubs)
        credentials = grpc.ssl_channel_credentials(root_certificates=ca)
        options = [("grpc.ssl_target_name_override", SERVER_NAME)]
        with grpc.secure_channel(addr, credentials, options=options) as channel:
            try:
                grpc.channel_ready_future(channel).result(timeout=CALL_TIMEOUT)
            except grpc.FutureTimeoutError:
                raise Failure("cannot connect to %s within %ss" % (addr, CALL_TIMEOUT))
            exercise(channel, token, api_pb2, api_pb2_grpc)


def exercise(channel, token, api_pb2, api_pb2_grpc):
    auth = [("authorization", "Bearer " + token)]
    resources = api_pb2_grpc.ResourcesStub(channel)
    kind = api_pb2.KindRef(resource="configmaps")

    # The standard gRPC health service (what load balancers and probes use).
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    health = health_pb2_grpc.HealthStub(channel).Check(
        health_pb2.HealthCheckRequest(service=""), timeout=CALL_TIMEOUT
    )
    check(
        health.status == health_pb2.HealthCheckResponse.SERVING,
        "health check of service \"\": expected SERVING, got %s"
        % health_pb2.HealthCheckResponse.ServingStatus.Name(health.status),
    )
    print("health: SERVING")

    # Create.
    body = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": NAME, "labels": {"client": "python"}},
        "data": {"step": "0"},
    }
    created = resources.Create(
        api_pb2.CreateRequest(json=json.dumps(body).encode(), namespace=NAMESPACE),
        metadata=auth,
        timeout=CALL_TIMEOUT,
    )
    check(
        (created.kind, created.namespace, created.name) == ("ConfigMap", NAMESPACE, NAME),
        "create returned the envelope %s/%s/%s" % (created.kind, created.namespace, created.name),
    )
    check(created.resource_version != "", "create returned no resource_version")
    check(created.uid != "", "create returned no uid")
    check(
        configmap_json(created).get("data") == {"step": "0"},
        "create returned data %r" % configmap_json(created).get("data"),
    )
    print(
        "created configmap %s/%s at resourceVersion %s"
        % (NAMESPACE, NAME, created.resource_version)
    )

    # Watch from the created object's resourceVersion: only later changes arrive.
    watch = resources.Watch(
        api_pb2.WatchRequest(
            kind=kind,
            namespace=NAMESPACE,
            resource_version=created.resource_version,
        ),
        metadata=auth,
        timeout=WATCH_TIMEOUT,
    )
    try:
        # Update twice, each time with the resourceVersion just read.
        current = created
        versions = []
        for step in ("1", "2"):
            obj = configmap_json(current)
            obj["data"] = {"step": step}
            check(
                obj["metadata"].get("resourceVersion") == current.resource_version,
                "the object's metadata.resourceVersion %r differs from the envelope's %r"
                % (obj["metadata"].get("resourceVersion"), current.resource_version),
            )
            previous = current.resource_version
            current = resources.Update(
                api_pb2.UpdateRequest(json=json.dumps(obj).encode()),
                metadata=auth,
                timeout=CALL_TIMEOUT,
            )
            check(
                int(current.resource_version) > int(previous),
                "update to step %s returned resourceVersion %s, not newer than %s"
                % (step, current.resource_version, previous),
            )
            versions.append(current.resource_version)
        print("updated twice: resourceVersions %s" % ", ".join(versions))

        # The watch delivers both changes, in order, with the new data.
        seen = []
        try:
            for event in watch:
                if event.type == api_pb2.BOOKMARK:
                    continue
                seen.append(
                    (
                        api_pb2.EventType.Name(event.type),
                        event.object.name,
                        configmap_json(event.object).get("data"),
                        event.object.resource_version,
                    )
                )
                if len(seen) == 2:
                    break
        except grpc.RpcError as e:
            raise Failure(
                "watch ended with %s (%s) after %d of 2 events: %r"
                % (e.code(), e.details(), len(seen), seen)
            )
        want = [
            ("MODIFIED", NAME, {"step": "1"}, versions[0]),
            ("MODIFIED", NAME, {"step": "2"}, versions[1]),
        ]
        check(seen == want, "watch delivered %r, expected %r" % (seen, want))
        print("watch: two MODIFIED events in order")
    finally:
        watch.cancel()

    # Get returns the last write.
    got = resources.Get(
        api_pb2.GetRequest(kind=kind, namespace=NAMESPACE, name=NAME),
        metadata=auth,
        timeout=CALL_TIMEOUT,
    )
    check(
        configmap_json(got).get("data") == {"step": "2"} and got.resource_version == versions[1],
        "get returned data %r at %s, expected {'step': '2'} at %s"
        % (configmap_json(got).get("data"), got.resource_version, versions[1]),
    )
    print("get: last data at resourceVersion %s" % got.resource_version)

    # An update carrying a stale resourceVersion is a Conflict.
    stale = configmap_json(created)
    stale["data"] = {"step": "stale"}
    err = expect_error(
        lambda: resources.Update(
            api_pb2.UpdateRequest(json=json.dumps(stale).encode()),
            metadata=auth,
            timeout=CALL_TIMEOUT,
        ),
        grpc.StatusCode.ABORTED,
        "update with a stale resourceVersion",
    )
    reason = metadata_value(err, "rkube-reason")
    check(
        reason == "Conflict",
        "stale update: rkube-reason metadata is %r, expected 'Conflict' (details: %s)"
        % (reason, err.details()),
    )
    print("stale update: ABORTED, rkube-reason=Conflict (%s)" % err.details())

    # Without credentials, or with a wrong token: Unauthenticated.
    get = api_pb2.GetRequest(kind=kind, namespace=NAMESPACE, name=NAME)
    expect_error(
        lambda: resources.Get(get, timeout=CALL_TIMEOUT),
        grpc.StatusCode.UNAUTHENTICATED,
        "get without a token",
    )
    expect_error(
        lambda: resources.Get(
            get, metadata=[("authorization", "Bearer not-" + token)], timeout=CALL_TIMEOUT
        ),
        grpc.StatusCode.UNAUTHENTICATED,
        "get with a wrong token",
    )
    print("no or wrong token: UNAUTHENTICATED")


def main(argv):
    if len(argv) != 4:
        print("usage: %s <api address> <admin.kubeconfig> <proto dir>" % argv[0], file=sys.stderr)
        return 2
    addr, kubeconfig, proto_dir = argv[1:]
    try:
        run(addr, kubeconfig, proto_dir)
    except Failure as e:
        print("PYTHON CLIENT FAILED: %s" % e, file=sys.stderr)
        return 1
    except grpc.RpcError as e:
        print(
            "PYTHON CLIENT FAILED: unexpected gRPC error %s: %s" % (e.code(), e.details()),
            file=sys.stderr,
        )
        return 1
    print("PYTHON CLIENT OK")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
