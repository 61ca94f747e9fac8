/**
 * `/dev/sev`, the PSP's SEV character device (drivers/crypto/ccp/sev-dev.c), as far as KVM looks
 * at it: the SNP commands KVM issues on a guest's behalf name an fd of it (`kvm_sev_cmd.sev_fd`),
 * and `sev_issue_cmd_external_user()` refuses any other file with -EBADF. Its own ioctls
 * (SEV_ISSUE_CMD: platform status, PEK/PDH management) are not modelled: an ioctl on it is the
 * unknown-ioctl answer of a file without them.
 */
import { KFile } from '../../../vfs/file.js';

export class SevDevFile extends KFile {
  readonly kind = 'sev' as const;
}
