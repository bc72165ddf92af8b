// image.build: a Debian rootfs made with debootstrap (scripts/build-rootfs.sh), customized and registered.
import { FailedPreconditionError } from '../core/errors.js';
import type { Image } from '../core/models.js';
import type { DaemonDeps } from './daemon.js';
import type { Progress } from './service.js';
import type { Params } from './schemas.js';

export async function buildImage(_deps: DaemonDeps, _p: Params<'image.build'>, _progress: Progress): Promise<Image> {
  throw new FailedPreconditionError('image build is not implemented yet');
}
