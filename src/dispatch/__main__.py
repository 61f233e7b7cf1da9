from dispatch.cli.main import app

app(prog_name="dispatch")
