"""What the stack's workers share: the port the web program serves on."""
import os

PORT = int(os.environ.get("STACK_PORT", "8080"))
