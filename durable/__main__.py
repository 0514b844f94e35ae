from durable.cli import main

main(prog_name="durable")
