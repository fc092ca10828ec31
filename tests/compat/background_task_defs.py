"""Tasks for test_background_tasks.py, in a module of their own so that the
task worker (a separate process) and the test derive the same task keys."""

from prefect import task


@task
def add(x: int, y: int) -> int:
    return x + y


@task
def shout(word: str) -> str:
    return word.upper() + "!"
