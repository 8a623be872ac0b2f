{
  "targets": [
    {
      "target_name": "fdpass",
      "sources": ["fdpass.c"],
      "cflags": ["-O2", "-Wall"]
    }
  ]
}
