"""Asks a gRPC server what it serves through server reflection, the way Python's
grpcio-reflection (which speaks `grpc.reflection.v1alpha` only) does for tools built on it.

Input (one JSON object on stdin): {"address": "127.0.0.1:9620", "service": "hookline.v1.EventBroker"}.
Output: {"services": [...], "methods": [...]} (the service's methods, found through the
descriptors reflection serves), or {"error": {"code": "UNIMPLEMENTED", "details": "..."}}.
"""

import json
import sys

import grpc
from google.protobuf.descriptor_pool import DescriptorPool
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import ProtoReflectionDescriptorDatabase


def main() -> None:
    request = json.load(sys.stdin)
    with grpc.insecure_channel(request["address"]) as channel:
        database = ProtoReflectionDescriptorDatabase(channel)
        try:
            services = list(database.get_services())
            service = DescriptorPool(database).FindServiceByName(request["service"])
            answer = {"services": services, "methods": [method.name for method in service.methods]}
        except grpc.RpcError as error:
            answer = {"error": {"code": error.code().name, "details": error.details()}}
    json.dump(answer, sys.stdout)


if __name__ == "__main__":
    main()
