"""The S3 gateway: every branch of every repo is an S3 bucket (see docs/s3.md)."""
