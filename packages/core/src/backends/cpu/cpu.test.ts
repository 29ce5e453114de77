import { runConformance } from '../../conformance/index.js';
import { createCpuBackend } from './index.js';

runConformance('cpu', async () => createCpuBackend());
