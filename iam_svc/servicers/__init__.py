"""The identity service's edges: IamService over gRPC (with its access table and the conversion
to and from its messages) and the OIDC endpoints over HTTP (`http`)."""

__all__ = ["access", "convert", "http", "iam_servicer"]
