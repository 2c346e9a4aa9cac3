#!/bin/sh
# The main job on a busybox image: import, run with a memory limit, change a
# file, commit, save, rmi, load, run the loaded image, export.
# Needs hutch on PATH and busybox-static. The image is left in the store as
# demo/busybox:latest; the containers and files this script makes are removed.
set -eu
remove_containers() {
    hutch rm -f demo-edit >/dev/null 2>&1 || true
    hutch rm -f demo-check >/dev/null 2>&1 || true
}
work=$(mktemp -d)
trap 'remove_containers; rm -rf "$work"' EXIT
remove_containers  # left over from an earlier run
step() { printf '\n$ %s\n' "$*"; "$@"; }

mkdir -p "$work/rootfs/bin" "$work/rootfs/etc" "$work/rootfs/tmp" "$work/rootfs/root"
cp /bin/busybox "$work/rootfs/bin/busybox"
for applet in $(/bin/busybox --list); do
    [ "$applet" = busybox ] || ln -s busybox "$work/rootfs/bin/$applet"
done
echo 'root:x:0:0:root:/root:/bin/sh' > "$work/rootfs/etc/passwd"
tar -C "$work/rootfs" -cf "$work/busybox.tar" .

step hutch import "$work/busybox.tar" demo/busybox --change 'CMD ["sh"]'
step hutch images
if [ "$(id -u)" -eq 0 ]; then
    step hutch run --rm -m 64m demo/busybox sh -c 'echo "hello from $(hostname), pid $$"'
    echo "(a 100 MB allocation under -m 32m is killed; the exit code is 137)"
    set +e
    hutch run --rm -m 32m demo/busybox dd if=/dev/zero of=/dev/null bs=100M count=1
    echo "exit code: $?"
    set -e
else
    # A non-root user needs the setuid hutch-cgroup for limits (see README).
    step hutch run --rm demo/busybox sh -c 'echo "hello from $(hostname), pid $$"'
fi
step hutch run --name demo-edit demo/busybox sh -c 'echo "changed in a container" > /etc/motd'
step hutch commit demo-edit demo/busybox:edited
step hutch save -o "$work/edited.tar" demo/busybox:edited
step hutch rm demo-edit
step hutch rmi demo/busybox:edited
step hutch load -i "$work/edited.tar"
step hutch run --name demo-check demo/busybox:edited cat /etc/motd
printf '\n$ hutch export demo-check | tar -tvf - etc/motd\n'
hutch export demo-check | tar -tvf - etc/motd
echo
echo "done: the main job ran end to end"
