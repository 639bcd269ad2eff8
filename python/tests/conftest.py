"""The plugin's own tests run other pytest sessions through pytester."""

pytest_plugins = ["pytester"]
