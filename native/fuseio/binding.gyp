{
  "targets": [
    {
      "target_name": "fuseio",
      "sources": ["fuseio.c"],
      "cflags": ["-O2", "-Wall"]
    }
  ]
}
