"""protoc's output from ../protos (regenerate with ./dev.sh protos; do not edit)."""
