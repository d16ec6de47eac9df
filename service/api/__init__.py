"""The gRPC contract as Python: generated stubs (``gen/``) and the script that regenerates them."""
