"""Shared runtime of every PanDA mesh service: config, database engine, gRPC bootstrap,
interceptors, errors and client channels. Services import this package and generated stubs,
never each other."""
