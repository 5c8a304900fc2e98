# The two fresh-machine commands of the README.
.PHONY: demo test setup

demo:
	./scripts/demo

test:
	./scripts/test

setup:
	./scripts/setup
