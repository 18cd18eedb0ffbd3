"""Generated gRPC stubs of the Open Inference Protocol v2 (package ``inference``; ``make proto``);
do not edit."""
