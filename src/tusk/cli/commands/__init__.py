"""The nouns: each module holds the commands for one kind of object, wired to verbs in main."""
