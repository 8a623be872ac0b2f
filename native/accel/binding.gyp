{
  "targets": [
    {
      "target_name": "accel",
      "sources": ["accel.c", "direct.c"],
      "cflags": ["-O3", "-Wall"]
    }
  ]
}
