/srv/models/m
/srv/out/o"
aespa Xi{®Gáz„?*
/srv/data/c.txt (@@