"""What a PanDA mesh service needs: gRPC bootstrap, interceptors and the token check, errors
as gRPC statuses, the database engine, bulk statements and migrations, filters and page
tokens."""
